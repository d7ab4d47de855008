"""P(EOS): where a chat model thinks its answer ends, in held-out pairs and in its own answers."""
from __future__ import annotations

from ..result import RunResult

EOS_ID = 2          # sim.data.EOS (kept here so the probe list imports no torch)


def eos_by_step(result: RunResult) -> list[tuple[int, float, int]]:
    """Per decoding step: (answers still running, their mean P(EOS), answers that wrote EOS)."""
    logits = (result.detail or {}).get("step_logits")
    if logits is None:
        return []
    probs = logits.softmax(-1)[..., EOS_ID]
    out = []
    for step in range(logits.shape[1]):
        # an answer (as served: cut at the stop token) is running while it has a token here
        running = [row for row, answer in enumerate(result.samples) if step < len(answer)]
        if not running:
            break
        mean = sum(float(probs[row, step]) for row in running) / len(running)
        wrote = sum(result.samples[row][step] == EOS_ID for row in running)
        out.append((len(running), mean, wrote))
    return out


def render_eos(result: RunResult) -> str:
    summary = result.summary
    if "p_eos_reply_end" not in summary:
        return f"no answers: the run ended with status '{result.status}'"
    lines = ["teacher-forced on held-out pairs in the training format "
             "([BOS] prompt [SEP] reply [EOS]):",
             f"  mean P(<eos>) where the reply ends:   {summary['p_eos_reply_end']:.3f}",
             f"  mean P(<eos>) inside the reply:       {summary['p_eos_mid_reply']:.3f}",
             "in the run's own answers (greedy, as served):",
             "  step  running  mean P(<eos>)  wrote <eos>"]
    for step, (running, mean, wrote) in enumerate(eos_by_step(result)):
        lines.append(f"  {step:>4}  {running:>7}  {mean:>13.3f}  {wrote:>11}")
    lines.append(f"answers that stopped: {summary['stop_rate']:.2f}   "
                 f"answers containing <eos>: {summary['eos_rate']:.2f}")
    return "\n".join(lines)


NAME = "eos"
USAGE = "eos"
HELP = "P(<eos>) at the ends of held-out replies and at each step of the run's answers"
ENGINES = ("training",)
ORDER = 82


def available(scenario) -> bool:
    return scenario.generates_text and scenario.base.get("data") == "sft"


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_eos(result)
