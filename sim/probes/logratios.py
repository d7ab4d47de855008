"""A DPO policy on held-out preference pairs: its log-ratios to the pretrained model."""
from __future__ import annotations

from ..result import RunResult
from ._common import ProbeError, int_arg


def render_logratios(result: RunResult, pairs: int = 6) -> str:
    held = (result.detail or {}).get("heldout_logratios")
    if not held:
        return f"no log-ratios: the run ended with status '{result.status}'"
    s = result.summary
    lines = [f"held-out pairs (the usual pipeline), measured against the pretrained model "
             f"itself: {len(held['chosen_ratio'])}",
             "log-ratio = log pi(answer | prompt) - log pi_pretrained(answer | prompt), summed "
             "over the answer's tokens",
             f"chosen answers:   mean log-ratio {s['chosen_logratio']:+8.3f}",
             f"rejected answers: mean log-ratio {s['rejected_logratio']:+8.3f}",
             f"margin (chosen - rejected):      {s['logratio_margin']:+8.3f}",
             f"implicit-reward accuracy (chosen log-ratio above rejected; a tie counts half): "
             f"{s['pref_accuracy']:.3f}",
             f"the policy gives the chosen answer the higher likelihood: "
             f"{s['policy_prefers_chosen']:.3f}",
             f"good answers, each word after the first: loss {s['nll_words']:.3f} nats / word "
             f"(pretrained model: {s['nll_words_before']:.3f}), KL to the pretrained model "
             f"{s['kl_words']:.3f} nats / word",
             f"logged by the training loss (last steps): log-ratio margin "
             f"{s['train_logratio_margin']:+.3f}, accuracy {s['train_accuracy']:.3f}",
             f"first {pairs} pairs:  chosen log-ratio   rejected log-ratio"]
    for i in range(min(pairs, len(held["chosen_ratio"]))):
        lines.append(f"  {i:>3}  {held['chosen_ratio'][i]:+16.3f}   "
                     f"{held['rejected_ratio'][i]:+18.3f}")
    return "\n".join(lines)


NAME = "logratios"
USAGE = "logratios [PAIRS]"
HELP = "a DPO policy's held-out log-ratios to the pretrained model, chosen and rejected"
ENGINES = ("training",)
ORDER = 85


def available(scenario) -> bool:
    return scenario.base.get("model") == "dpo"


def run(result: RunResult, args: list[str], plot_dir) -> str:
    if len(args) > 1:
        raise ProbeError("usage: logratios [PAIRS]")
    return render_logratios(result, int_arg(args[0], "PAIRS") if args else 6)
