"""An RLHF policy's answers to held-out prompts, with the reward model's and the gold scores."""
from __future__ import annotations

from ..result import RunResult
from ._common import ProbeError, int_arg


def render_rollouts(result: RunResult, count: int = 8) -> str:
    held = (result.detail or {}).get("heldout_rollouts")
    if not held:
        return f"no rollouts: the run ended with status '{result.status}'"
    from ..rlhf import PROMPT_WORDS
    s = result.summary
    lines = [f"held-out prompts answered by the tuned policy (sampled, temperature 1): "
             f"{len(held['tokens'])}",
             f"reward-model score (proxy): mean {s['proxy_reward']:+.3f}",
             f"gold reward (share of the answer's tokens the grammar allows after the two "
             f"before): mean {s['gold_reward']:.3f}",
             f"KL of the policy from the pretrained model, summed over an answer: "
             f"{s['kl_pretrained']:.3f} nats",
             f"share of answer tokens that are word {_favourite(result)}: "
             f"{s['favourite_share']:.3f}",
             f"the reward model on held-out pairs (a grammatical answer against the same answer "
             f"with two words replaced): {s['rm_accuracy']:.3f} ranked right",
             f"first {count}:  prompt | answer   score   gold"]
    for tokens, score, gold in list(zip(held["tokens"], held["reward"], held["gold"]))[:count]:
        prompt = " ".join(map(str, tokens[:PROMPT_WORDS]))
        answer = " ".join(map(str, tokens[PROMPT_WORDS:]))
        lines.append(f"  {prompt} | {answer:<24} {score:+7.2f}  {gold:.2f}")
    return "\n".join(lines)


def _favourite(result: RunResult) -> int:
    from ..rlhf import favourite_word
    return favourite_word(result.config.vocab_size)


NAME = "rollouts"
USAGE = "rollouts [COUNT]"
HELP = "an RLHF policy's answers to held-out prompts, with reward-model and gold scores"
ENGINES = ("training",)
ORDER = 86


def available(scenario) -> bool:
    return scenario.base.get("model") == "rlhf"


def run(result: RunResult, args: list[str], plot_dir) -> str:
    if len(args) > 1:
        raise ProbeError("usage: rollouts [COUNT]")
    return render_rollouts(result, int_arg(args[0], "COUNT") if args else 8)
