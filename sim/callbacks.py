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

A callback subclasses `Callback` and overrides only the events it needs; a method named like an
event that is not one (a typo such as `on_stepend`) is an error when the list is built, not a
hook that silently never fires. This module does not import torch.
"""
from __future__ import annotations

from .config import did_you_mean

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


class UnknownEvent(ValueError):
    """A callback defines `on_<something>` that the loop never fires."""


class CallbackList:
    """Fires an event on every callback in order; transforming events chain their results."""

    def __init__(self, callbacks) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            for name in dir(type(callback)):
                if name.startswith("on_") and name not in EVENTS:
                    raise UnknownEvent(f"{type(callback).__name__}.{name} is not an event"
                                       f"{did_you_mean(name, EVENTS)}; events: {', '.join(EVENTS)}")

    def fire(self, event: str, run) -> None:
        if event not in _NOTIFY:
            raise UnknownEvent(f"'{event}' is not a notification event"
                               f"{did_you_mean(event, _NOTIFY)}")
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

    def decode_step(self, run, step, cache):
        """Every callback sees the cache; the last non-None answer gives the positions."""
        positions = None
        for callback in self.callbacks:
            replaced = callback.on_decode_step(run, step, cache)
            if replaced is not None:
                positions = replaced
        return positions


# events that only notify (the others transform a value and have their own method above)
_NOTIFY = tuple(e for e in EVENTS if e not in ("on_batch", "on_loss", "on_decode_step"))
