"""The learning-rate range test (Smith 2015): sweep the lr, suggest one."""
from __future__ import annotations

import dataclasses
import math

from ..result import RunResult
from ._common import ProbeError, _untracked


def lr_range_test(source, start_lr: float = 1e-5, end_lr: float = 10.0, steps: int = 50,
                  beta: float = 0.9, diverge: float = 4.0) -> dict:
    """The learning-rate range test (Smith 2015, fastai's `lr_find`): train a fresh model while
    the learning rate grows exponentially from `start_lr` to `end_lr`, one step each, recording
    the loss smoothed by an exponential moving average (with bias correction); stop once the
    smoothed loss exceeds `diverge` x its best. The suggestion is the lr of steepest descent of
    the smoothed loss (against log lr); `min_lr / 10` is reported too.

    `source` is a RunResult (its scenario's base config plus the run's own `sets` is swept:
    not the hidden cause's faults, not the fixes), a Scenario (its base config) or a
    TrainConfig (used as is). Warmup, schedule and clipping are turned off; memory is not
    tracked. Smoothing: beta=0.9 (about a 10-step window) suits a ~50-step sweep; fastai's
    0.98 assumes ~100 steps and would lag the blow-up.
    """
    import numpy as np
    from ..callbacks import Callback
    from ..loop import train

    if not 0 < start_lr < end_lr or steps < 3:
        raise ProbeError(f"lr_range_test needs 0 < start_lr < end_lr and steps >= 3 "
                         f"(got {start_lr:g}, {end_lr:g}, {steps})")
    config, note = _lr_test_config(source)
    config = dataclasses.replace(_untracked(config), steps=steps, warmup_steps=0,
                                 schedule="constant", grad_clip=0.0, eval_every=0,
                                 skip_nonfinite=False)
    lrs_planned = start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(steps - 1, 1))

    class Sweep(Callback):
        def __init__(self):
            self.lrs, self.losses, self.smoothed = [], [], []
            self.avg, self.best = 0.0, float("inf")
            self.stopped = "reached end_lr"

        def on_step_start(self, run):
            run.lr = float(lrs_planned[run.step])
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr

        def on_after_backward(self, run):
            # the loss of this step, measured before the update it causes
            loss = run.loss
            self.lrs.append(run.lr)
            self.losses.append(loss)
            if not math.isfinite(loss):
                self.smoothed.append(float("nan"))
                self.stopped = "loss became non-finite"
                run.control.skip_update = True
                run.control.stop = True
                return
            self.avg = beta * self.avg + (1 - beta) * loss
            smooth = self.avg / (1 - beta ** len(self.losses))
            self.smoothed.append(smooth)
            self.best = min(self.best, smooth)
            if len(self.losses) > 1 and smooth > diverge * self.best:
                self.stopped = f"smoothed loss exceeded {diverge:g}x its best"
                run.control.stop = True

    sweep = Sweep()
    train(config, [sweep])
    lrs = np.array(sweep.lrs)
    smoothed = np.array(sweep.smoothed)
    report = {"lrs": lrs, "losses": np.array(sweep.losses, dtype=float), "smoothed": smoothed,
              "stopped": sweep.stopped, "config": config, "beta": beta,
              "start_lr": start_lr, "end_lr": end_lr}
    finite = np.isfinite(smoothed)
    if finite.sum() >= 3:
        idx = np.flatnonzero(finite)
        best = idx[np.argmin(smoothed[idx])]
        report["min_lr"] = float(lrs[best])
        # steepest descent before the minimum, against log10(lr)
        upto = idx[idx <= best]
        if len(upto) >= 3:
            slopes = np.gradient(smoothed[upto], np.log10(lrs[upto]))
            steep = upto[int(np.argmin(slopes))]
            report["steepest_lr"] = float(lrs[steep])
            report["steepest_slope"] = float(slopes.min())
        else:
            report["steepest_lr"] = float(lrs[best]) / 10
        report["suggested_lr"] = report["steepest_lr"]
        report["min_over_10_lr"] = report["min_lr"] / 10
    else:
        report["suggested_lr"] = None
        report["note"] = "the loss diverged almost immediately; start the sweep lower"
    if note:
        report["note"] = note if "note" not in report else report["note"] + "; " + note
    return report


def _lr_test_config(source):
    from ..config import TrainConfig
    from ..scenario import Scenario
    if isinstance(source, TrainConfig):
        return source, None
    if isinstance(source, Scenario):
        from .. import engines
        from ..incidents import bare
        return engines.get(source.engine).prepare(bare(source, 0)).config, None
    if isinstance(source, RunResult):
        prepared = source.prepared        # the healthy base with the run's own settings
        return prepared.engine.prepare(prepared.incident.healthy(), (),
                                       prepared.sets).config, None
    raise TypeError(f"lr_range_test needs a RunResult, Scenario or TrainConfig, "
                    f"not {type(source).__name__}")


def render_lr_range_test(report: dict) -> str:
    lrs, smoothed = report["lrs"], report["smoothed"]
    lines = [f"LR range test: {len(lrs)} steps, lr {report['start_lr']:.0e} -> "
             f"{lrs[-1] if len(lrs) else report['start_lr']:.3g} ({report['stopped']})"]
    if report.get("suggested_lr") is not None:
        lines.append(f"  lowest smoothed loss {min(s for s in smoothed if s == s):.3f} "
                     f"at lr {report['min_lr']:.3g}")
        lines.append(f"  steepest descent at lr {report['steepest_lr']:.3g}; "
                     f"min/10 = {report['min_over_10_lr']:.3g}")
        lines.append(f"  suggested lr: {report['suggested_lr']:.3g}")
    if report.get("note"):
        lines.append(f"  note: {report['note']}")
    return "\n".join(lines)


NAME = "lrfind"
USAGE = "lrfind"
HELP = "learning-rate range test on a fresh model"
ENGINES = ("training",)
ORDER = 60                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    from .. import plots
    report = lr_range_test(result)
    path = plots.lr_finder(report, plot_dir / "probe_lr_range_test.png")
    return render_lr_range_test(report) + f"\nwrote {path}"
