"""The loop's hook points: one closed list of events shared by telemetry, faults and fixes.

The training loop fires these, in this order, at the boundaries of its labelled steps:

    on_run_start
    per step:   on_step_start            (after the learning rate is set)
                per micro-batch:
                    on_batch(batch)       -> may return a replacement batch
                    on_loss(loss_sum, n_tokens, loss) -> may return a replacement loss
                on_after_backward        (gradients are complete and unscaled)
                on_before_update         (after clipping; may set run.control.skip_update)
                on_eval_start            (inside torch.no_grad, before a held-out evaluation)
                on_step_end              (the step's record is complete)
    on_run_end                            (always, also after a crash or Ctrl-C)

After training, scenarios that generate text decode with `sim.decoding.generate`, which fires

    on_decode_step(step, cache)           before each forward pass that uses the KV cache
                                          (step 0 = prompt prefill); may mutate the cache and
                                          may return position ids for the new tokens

A callback subclasses `Callback` and overrides only the events it needs. This module does not
import torch.
"""
from __future__ import annotations

from typing import Any

EVENTS = ("on_run_start", "on_step_start", "on_batch", "on_loss", "on_after_backward",
          "on_before_update", "on_eval_start", "on_step_end", "on_run_end", "on_decode_step")


class Callback:
    """Base class: every event is a no-op."""

    def on_run_start(self, run) -> None: ...
    def on_step_start(self, run) -> None: ...
    def on_batch(self, run, batch): return None
    def on_loss(self, run, loss_sum, n_tokens, loss): return None
    def on_after_backward(self, run) -> None: ...
    def on_before_update(self, run) -> None: ...
    def on_eval_start(self, run) -> None: ...
    def on_step_end(self, run) -> None: ...
    def on_run_end(self, run) -> None: ...
    def on_decode_step(self, run, step, cache): return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class CallbackList:
    """Fires an event on every callback in order; transforming events chain their results."""

    def __init__(self, callbacks) -> None:
        self.callbacks = list(callbacks)

    def fire(self, event: str, run) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(run)

    def batch(self, run, batch):
        for callback in self.callbacks:
            replaced = callback.on_batch(run, batch)
            if replaced is not None:
                batch = replaced
        return batch

    def loss(self, run, loss_sum, n_tokens, loss):
        for callback in self.callbacks:
            replaced = callback.on_loss(run, loss_sum, n_tokens, loss)
            if replaced is not None:
                loss = replaced
        return loss

    def find(self, kind: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)
