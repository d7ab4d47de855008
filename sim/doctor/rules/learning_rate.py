"""The learning rate and the size of the updates it makes (Karpathy's rule of thumb: an
update of about 1e-3 of the weights per step)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, median

UPDATE_HIGH = 0.1       # median update / weight ratio over the second half >= 0.1
UPDATE_LOW = 1e-5       # ... or below 1e-5
RISING = 0.8            # the lr rises at >= 80% of the steps (never settling after warmup)
RISE_FACTOR = 10.0      # ... to >= 10x its first value


def update_ratio(log) -> Finding | None:
    points = log.finite("update_ratio")
    if len(points) < 8:
        return None
    late = median([v for _, v in points[len(points) // 2:]])
    where = f"steps {points[len(points) // 2][0]}-{points[-1][0]}"
    if late >= UPDATE_HIGH:
        return Finding(
            "update_ratio", "lr_too_high",
            f"each step changes the weights by {fmt(late)} of their size (median, second "
            "half): far above the ~1e-3 of a stable run", where, 0.6,
            f"median update/weight ratio >= {UPDATE_HIGH:g}",
            ("the learning rate is too high", "an lr schedule that raises it"),
            ("plot lr and the update ratio", "lower the lr"), ("bad_lr", "nan_loss"),
            "instability")
    if late < UPDATE_LOW:
        return Finding(
            "update_ratio", "not_converged",
            f"each step changes the weights by only {fmt(late)} of their size (median, second "
            "half)", where, 0.6, f"median update/weight ratio < {UPDATE_LOW:g}",
            ("the learning rate is too low", "frozen or detached parameters"),
            ("an LR range test", "check which parameters the optimizer holds"),
            ("bad_lr",), "inefficiency")
    return None


def rising_lr(log) -> Finding | None:
    points = log.finite("lr")
    if len(points) < 8:
        return None
    values = [v for _, v in points]
    rises = sum(b > a for a, b in zip(values, values[1:])) / (len(values) - 1)
    if rises < RISING or values[0] <= 0 or values[-1] < RISE_FACTOR * values[0]:
        return None
    return Finding(
        "rising_lr", "lr_too_high",
        f"the learning rate rises at {rises:.0%} of the steps, {fmt(values[0])} -> "
        f"{fmt(values[-1])}: a warmup that never ends", f"steps {points[0][0]}-{points[-1][0]}",
        0.7, f"lr rises at >= {RISING:.0%} of steps to >= {RISE_FACTOR:g}x its first value",
        ("a scheduler bug: warmup without an end, a scale applied every step",),
        ("print the scheduler's lr next to the configured lr",), ("nan_loss",), "instability")


RULES = (update_ratio, rising_lr)
