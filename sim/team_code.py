"""Code bugs that scenarios inject, each a callback that changes exactly one thing.

Misconfigurations (a learning rate, a padding side, a precision) are plain config changes in the
scenario; the bugs here are the ones a config cannot express. A fix that repairs one lists its
class in `Fix.repairs`, and the re-run simply goes without it. This module imports torch only
inside the callbacks, so scenario modules stay cheap to import.
"""
from __future__ import annotations

from .callbacks import Callback


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


class StaleKVCache(Callback):
    """Decoding reuses the prompt's KV cache every step: the keys and values of each generated
    token are computed but never kept (the loop passes the prefill cache again instead of the
    updated one). So every new token attends to the prompt and itself only, and sits at the same
    position (the prompt length) step after step."""

    def on_decode_step(self, run, step, cache):
        if step == 1:                        # the cache now holds exactly the prompt
            self._prompt_len = cache.length
        elif step > 1:                       # drop what the previous steps appended
            cache.keys[:] = [k[:, :, :self._prompt_len] for k in cache.keys]
            cache.values[:] = [v[:, :, :self._prompt_len] for v in cache.values]
        return None
