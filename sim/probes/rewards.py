"""Rewards on held-out preference pairs: by answer length, and pair by pair."""
from __future__ import annotations

from ..result import RunResult
from ._common import ProbeError, int_arg


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def rewards_by_length(held: dict) -> list[tuple[int, int, float | None, int, float | None]]:
    """Per answer length in words: (words, chosen answers, their mean reward, rejected
    answers, their mean reward)."""
    rows = []
    for words in sorted({*held["preferred_words"], *held["other_words"]}):
        chosen = [r for r, w in zip(held["preferred"], held["preferred_words"]) if w == words]
        other = [r for r, w in zip(held["other"], held["other_words"]) if w == words]
        rows.append((words, len(chosen), _mean(chosen), len(other), _mean(other)))
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def render_rewards(result: RunResult, pairs: int = 6) -> str:
    held = (result.detail or {}).get("heldout_rewards")
    if not held:
        return f"no rewards: the run ended with status '{result.status}'"
    s = result.summary
    lines = [f"held-out pairs (the usual pipeline, answer lengths drawn apart): "
             f"{len(held['preferred'])}",
             "  words  chosen  mean reward   rejected  mean reward"]
    for words, n_chosen, chosen, n_other, other in rewards_by_length(held):
        lines.append(f"  {words:>5}  {n_chosen:>6}  {_num(chosen):>11}   {n_other:>8}  "
                     f"{_num(other):>11}")
    lines += [f"accuracy (r_chosen > r_rejected; a tie counts half): {s['pref_accuracy']:.3f}",
              f"  on pairs whose rejected answer is the longer one:    "
              f"{s['accuracy_longer_rejected']:.3f}",
              f"mean margin r_chosen - r_rejected: {s['pref_margin']:+.3f}",
              f"pairs with exactly equal rewards:  {s['tied_share']:.3f}",
              f"correlation of reward and answer length (all answers): {s['length_corr']:+.3f}",
              f"training pairs (as the collator labelled them) whose chosen answer is the "
              f"longer one: {s['train_chosen_longer']:.3f}",
              f"first {pairs} pairs:  r_chosen (words)   r_rejected (words)"]
    for i in range(min(pairs, len(held["preferred"]))):
        lines.append(f"  {i:>3}  {held['preferred'][i]:+9.3f} ({held['preferred_words'][i]})"
                     f"   {held['other'][i]:+9.3f} ({held['other_words'][i]})")
    return "\n".join(lines)


NAME = "rewards"
USAGE = "rewards [PAIRS]"
HELP = "a reward model's held-out rewards by answer length, and pair by pair (writes a plot)"
ENGINES = ("training",)
ORDER = 84


def available(scenario) -> bool:
    return scenario.base.get("data") == "preferences" and scenario.base.get("model") == "reward"


def run(result: RunResult, args: list[str], plot_dir) -> str:
    if len(args) > 1:
        raise ProbeError("usage: rewards [PAIRS]")
    pairs = int_arg(args[0], "PAIRS") if args else 6
    text = render_rewards(result, pairs)
    held = (result.detail or {}).get("heldout_rewards")
    if held and plot_dir is not None:
        from ..plots import reward_vs_length
        text += f"\nwrote {reward_vs_length(held, plot_dir / 'probe_rewards.png')}"
    return text
