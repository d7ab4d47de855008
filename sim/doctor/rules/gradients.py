"""Gradient norms: exploding (spikes far above their typical size) and vanishing (near zero
while the loss does not move)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, median, steps_text
from .stalled import STALLED

EXPLODE = 50.0          # a grad norm >= 50x the run's median
VANISH = 1e-7           # median grad norm of the second half below this


def exploding_gradients(log) -> Finding | None:
    points = log.finite("grad_norm")
    if len(points) < 8:
        return None
    typical = median([v for _, v in points])
    if typical <= 0:
        return None
    spikes = [s for s, v in points if v >= EXPLODE * typical]
    if not spikes:
        return None
    peak = max(v for _, v in points)
    return Finding(
        "exploding_gradients", "lr_too_high",
        f"gradient norm spikes to {fmt(peak)}, {fmt(peak / typical)}x its median "
        f"{fmt(typical)}", steps_text(spikes), 0.75 if spikes[0] <= points[len(points) // 3][0]
        else 0.6, f"grad norm >= {EXPLODE:g}x the run's median",
        ("the learning rate is too high (too little warmup)", "no gradient clipping",
         "a bad batch"),
        ("plot loss and grad_norm together: do the spikes come early, with the loss jumping?",
         "an LR range test; lower the lr or warm up longer; clip at 1.0"),
        ("bad_lr", "nan_loss"), "instability")


def vanishing_gradients(log) -> Finding | None:
    points = log.finite("grad_norm")
    if len(points) < 8:
        return None
    late = median([v for _, v in points[len(points) // 2:]])
    if late >= VANISH or sum(v == 0.0 for _, v in points) >= STALLED * len(points):
        return None                                  # exactly zero: no_gradient speaks
    return Finding(
        "vanishing_gradients", "vanishing_gradients",
        f"gradient norm is {fmt(late)} over the second half: the weights barely get a signal",
        f"steps {points[len(points) // 2][0]}-{points[-1][0]}", 0.6,
        f"median grad norm of the second half < {VANISH:g}",
        ("saturated activations, a detached graph (a .detach() / no_grad in the forward)",
         "a loss that does not depend on the parameters", "a dead ReLU network"),
        ("per-layer gradient norms: which layers get none", "check requires_grad"),
        (), "instability")


RULES = (exploding_gradients, vanishing_gradients)
