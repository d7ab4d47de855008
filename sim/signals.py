"""The per-step signals: one table, read by telemetry, plots, the console, probes and criteria.

A signal is a field of every step record in `metrics.jsonl`. Adding one means adding a row here
with a `measure` function (it gets the loop's `Run` at the end of each step); the Recorder
writes it, and the log table, `plot NAME`, the live console and the probe help pick it up
from this table. The built-in signals are measured by `telemetry.Recorder` itself, in a few
fused tensor operations. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Signal:
    name: str                       # the key in each step record
    title: str                      # how a plot or a help line names it
    unit: str                       # y-axis label
    log: bool | str = False         # True: log when it spans > 8x; "auto": > 50x; False: linear
    kind: str = "line"              # line | bar (counts) | points (sparse) | layers | flag
    fmt: str = ".4g"                # format in the log table
    short: str = ""                 # column header in the log table ("" = the name)
    console_label: str = ""         # column header in the live console ("" = the short one)
    console_width: int = 0          # width in the live console table; 0 = not shown there
    every_step: bool = True         # measured every step (None means NaN/inf), else sparse
    reference: str = ""             # TrainConfig field drawn as a horizontal line, if set (> 0)
    reference_label: str = ""       # how that line is labelled, with {value}
    floor_zero: bool = False        # a linear axis that starts at 0
    measure: Callable[[Any], Any] | None = None   # run -> value; None: the Recorder measures it

    @property
    def header(self) -> str:
        return self.short or self.name

    @property
    def console_header(self) -> str:
        return self.console_label or self.header


def _pair_measure(name: str) -> Callable[[Any], Any]:
    """A reward model's or a DPO run's measure on the step's batch (None for other runs)."""
    def measure(run):
        if run.config.model == "dpo":
            from .dpo import batch_measures
            return None if run.logits is None else batch_measures(run)[name]
        from .preferences import batch_measures
        measured = batch_measures(run)
        return None if measured is None else measured.get(name)
    return measure


def _rollout_measure(name: str) -> Callable[[Any], Any]:
    """An RLHF run's measure of the step's rollouts (None for other runs)."""
    def measure(run):
        if run.config.model != "rlhf" or run.logits is None:
            return None
        from .rlhf import batch_measures
        return batch_measures(run)[name]
    return measure


def _heldout_accuracy(run):
    if run.config.model == "dpo":
        from .dpo import heldout_accuracy
        return None if run.eval_loss is None else heldout_accuracy(run)
    from .preferences import heldout_accuracy
    return heldout_accuracy(run)


MIB = "MiB (2^20 bytes)"
NATS = "cross-entropy (nats / token)"

SIGNALS: tuple[Signal, ...] = (
    Signal("loss", "training loss", NATS, "auto", fmt=".4f", console_width=9),
    Signal("grad_norm", "global gradient norm (before clipping)", "L2 norm", True,
           console_width=10, reference="grad_clip", reference_label="clip at {value:g}"),
    Signal("param_norm", "parameter norm", "L2 norm", True),
    Signal("update_ratio", "update size relative to the parameters", "||Δθ|| / ||θ|| per step",
           True, fmt=".3g", short="upd/param", console_width=10),
    Signal("lr", "learning rate", "learning rate", "auto", fmt=".3g", console_width=9,
           floor_zero=True),
    Signal("nonfinite", "non-finite values in loss and gradients", "count per step", kind="bar",
           fmt="d", short="nonfin", console_label="non-finite", console_width=10, floor_zero=True),
    Signal("updated", "optimizer update applied", "1 = applied, 0 = skipped", kind="flag",
           floor_zero=True),
    Signal("mem_mib", "memory in use after the step", MIB, fmt=".2f", short="mem MiB",
           console_width=8, every_step=False, reference="memory_budget_mib",
           reference_label="budget {value:g} MiB", floor_zero=True),
    Signal("mem_peak_mib", "peak memory during the step", MIB, fmt=".2f", short="peak MiB",
           every_step=False, reference="memory_budget_mib",
           reference_label="budget {value:g} MiB", floor_zero=True),
    Signal("eval_loss", "held-out loss", NATS, "auto", kind="points", fmt=".4f", short="eval",
           console_width=8, every_step=False),
    Signal("loss_scale", "fp16 loss scale", "scale factor", True, short="scale", every_step=False),
    Signal("layer_grad_norm", "gradient norm per layer", "L2 norm", True, kind="layers"),
    # reward models only (a measured signal that answers None is left out of the record)
    Signal("accuracy", "preference accuracy on the step's batch", "share of pairs ranked right",
           fmt=".3f", short="acc", console_width=6, every_step=False, floor_zero=True,
           measure=_pair_measure("accuracy")),
    Signal("margin", "reward margin on the step's batch (DPO: the implicit one)",
           "mean r_chosen - r_rejected",
           fmt=".3g", console_width=8, every_step=False, measure=_pair_measure("margin")),
    # DPO only: the team's log-ratios log pi_theta(y|x) - log pi_ref(y|x) on the step's batch
    Signal("chosen_logratio", "log-ratio of the chosen answers to the reference",
           "mean log pi/pi_ref (nats / answer)", fmt=".3g", short="chosen lr", every_step=False,
           measure=_pair_measure("chosen_logratio")),
    Signal("rejected_logratio", "log-ratio of the rejected answers to the reference",
           "mean log pi/pi_ref (nats / answer)", fmt=".3g", short="rejected lr",
           every_step=False, measure=_pair_measure("rejected_logratio")),
    # RLHF only: the step's rollouts as the team's loss saw them
    Signal("reward", "reward-model score of the step's rollouts", "mean score (proxy reward)",
           fmt=".3g", console_width=8, every_step=False, measure=_rollout_measure("reward")),
    Signal("kl", "KL estimate to the reference on the step's rollouts",
           "mean sum of log pi/pi_ref (nats / answer)", fmt=".3g", console_width=8,
           every_step=False, measure=_rollout_measure("kl")),
    Signal("kl_penalty", "KL penalty subtracted from the reward",
           "mean score - shaped reward", fmt=".3g", short="penalty", every_step=False,
           measure=_rollout_measure("kl_penalty")),
    Signal("gold_reward", "gold reward of the step's rollouts",
           "share of grammatical tokens", fmt=".3f", short="gold", console_width=6,
           every_step=False,
           floor_zero=True, measure=_rollout_measure("gold_reward")),
    Signal("eval_accuracy", "held-out preference accuracy", "share of pairs ranked right",
           kind="points", fmt=".3f", short="eval acc", every_step=False, floor_zero=True,
           measure=_heldout_accuracy),
)

BY_NAME: dict[str, Signal] = {signal.name: signal for signal in SIGNALS}
# the live console's columns, in the order a reader scans them
CONSOLE: tuple[Signal, ...] = tuple(BY_NAME[name] for name in (
    "loss", "grad_norm", "lr", "update_ratio", "nonfinite", "mem_mib", "eval_loss"))
TABLE: tuple[Signal, ...] = tuple(s for s in SIGNALS if s.kind != "layers")
MEASURED: tuple[Signal, ...] = tuple(s for s in SIGNALS if s.measure)   # bring their own measure


def layer_signal(layer: str) -> Signal:
    """One layer's gradient norm, plotted as `layer:<name>`."""
    return Signal(f"layer:{layer}", f"gradient norm of {layer}", "L2 norm", True)


def get(name: str) -> Signal:
    if name.startswith("layer:"):
        return layer_signal(name[6:])
    return BY_NAME[name]


def names() -> list[str]:
    return [signal.name for signal in SIGNALS]
