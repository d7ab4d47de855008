"""Code bugs that scenarios inject, each a callback that changes exactly one thing.

Misconfigurations (a learning rate, a padding side, a precision) are plain config changes in the
scenario; the bugs here are the ones a config cannot express. A fix that repairs one lists its
class in `Fix.repairs`, and the re-run simply goes without it. This module imports torch only
inside the callbacks, so scenario modules stay cheap to import.
"""
from __future__ import annotations

from .callbacks import Callback


class CompoundingWarmup(Callback):
    """The refactored warmup ramps the lr up exponentially from a tenth of it, multiplying the
    optimizer's lr in place every step (`group["lr"] *= 10 ** (1 / warmup_steps)`), and the
    check that stopped it at the end of the warmup was lost: the lr keeps growing by the same
    factor every step (1.58x for a 5-step warmup), tenfold every `warmup_steps` steps. The
    config still says the lr it was given."""

    def on_step_start(self, run) -> None:
        warmup = run.config.warmup_steps
        if not warmup:
            return
        if run.step == 0:
            self.lr = run.config.lr / 10
        else:                               # meant: only while run.step < warmup
            self.lr *= 10 ** (1 / warmup)
        run.lr = self.lr
        for group in run.optimizer.param_groups:
            group["lr"] = run.lr


class GlobalBatchLoader(Callback):
    """The data loader was handed the global batch size: every micro-batch it yields holds all
    `batch_size * grad_accum_steps` sequences of the optimizer step, so each forward pass runs
    on the whole step's data at once. The config still says micro-batches of `batch_size`."""

    def on_batch(self, run, batch):
        import torch
        from .data import Batch
        parts = [run.stream.batch(run.step, m) for m in range(run.config.grad_accum_steps)]
        if len(parts) == 1:
            return None
        pads = [p.key_padding for p in parts]
        return Batch(torch.cat([p.tokens for p in parts]), torch.cat([p.targets for p in parts]),
                     None if pads[0] is None else torch.cat(pads))


class UnsafeTokenMean(Callback):
    """The loss divides the summed token loss by the number of supervised tokens with no guard:
    a batch with no supervised tokens gives 0 / 0 = NaN."""

    def on_loss(self, run, loss_sum, n_tokens, loss):
        return loss_sum / n_tokens


class MetricHistoryLeak(Callback):
    """Logs a per-micro-batch confidence metric as a tensor (`history.append(conf)` instead of
    `conf.item()`); each one keeps its slice of the autograd graph, and with it the softmax
    output of that step, alive for the rest of the run."""

    def __init__(self) -> None:
        self.history: list = []

    def on_loss(self, run, loss_sum, n_tokens, loss):
        confidence = run.logits.softmax(-1).amax(-1).mean()
        self.history.append(confidence)
        return None


class GradEnabledEval(Callback):
    """Evaluation re-enables autograd inside `torch.no_grad()` (the no_grad block was lost in a
    refactor), so the held-out forward pass stores activations for a backward that never comes."""

    def on_eval_start(self, run) -> None:
        import torch
        torch.set_grad_enabled(True)


class EarlyExport(Callback):
    """The release script exports the checkpoint saved after 20 steps instead of the final one:
    training stops there, whatever `steps` says."""

    EXPORT_STEP = 20

    def on_step_end(self, run) -> None:
        if run.step + 1 >= self.EXPORT_STEP:
            run.control.stop = True
