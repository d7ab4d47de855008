"""Gradients that are not cleared when the optimizer steps: a gradient norm that only grows
(never cleared), or a sawtooth that climbs for k steps and falls back (cleared every k-th step
while the optimizer steps every step)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, steps_text

GROWTH = 10.0           # each of the last 10 steps' grad norms is >= 10x the first step's ...
SETTLES = 0.1           # ... and over the second half it never falls > 10% below its highest
SAW_DROP = 0.6          # a fall: the grad norm below 0.6x the step before ...
SAW_SHARE = 0.6         # ... at >= 60% of the steps of one phase of a period p ...
SAW_RISE = 0.7          # ... while it rises at >= 70% of the other steps
PERIODS = range(2, 9)
REPEATS = 8             # ... over >= 8 periods: a noisy gradient norm (an RL run's, 24 steps)
                        # matches a period-4 pattern at 67% by chance over 6


def gradients_not_cleared(log) -> Finding | None:
    points = log.finite("grad_norm")
    if len(points) < 12 or points[0][1] <= 0:
        return None
    values = [v for _, v in points]
    first, tail = values[0], values[-10:]
    if min(tail) < GROWTH * first or _drawdown(values[len(values) // 2:]) > SETTLES:
        return None
    return Finding(
        "gradients_not_cleared", "gradients_not_cleared",
        f"the gradient norm only grows: {fmt(first)} at step {points[0][0]} -> "
        f"{fmt(values[-1])} ({fmt(values[-1] / first)}x); over the second half it never falls "
        f"back (a sum of old gradients, not one batch's)", f"steps {points[0][0]}-{points[-1][0]}",
        0.8, f"each of the last 10 grad norms >= {GROWTH:g}x the first step's, and never > "
        f"{SETTLES:.0%} below its highest so far over the second half",
        ("gradients are never cleared between steps: optimizer.zero_grad() missing, or a "
         "'reset' that does not zero (.detach_() or requires_grad_() on a .grad)",
         "parameters outside the optimizer: nothing clears their .grad (see the update ratio)",
         "an accumulation window that never ends"),
        ("print one parameter's .grad norm before and after the reset",
         "call optimizer.zero_grad(set_to_none=True) after every optimizer.step()"),
        ("loss_fluctuates",), "failure")


def accumulation_sawtooth(log) -> Finding | None:
    points = log.finite("grad_norm")
    values = [v for _, v in points]
    best = None
    for period in PERIODS:
        if len(values) < REPEATS * period:
            break
        for phase in range(period):
            at = [i for i in range(1, len(values)) if i % period == phase]
            others = [i for i in range(1, len(values)) if i % period != phase]
            falls = sum(values[i] < SAW_DROP * values[i - 1] for i in at) / len(at)
            rises = sum(values[i] > values[i - 1] for i in others) / len(others)
            if falls >= SAW_SHARE and rises >= SAW_RISE and \
                    (best is None or falls + rises > best[2] + best[3]):
                best = (period, phase, falls, rises)
    if best is None or _stepped_once_per_window(log, points, best[0], best[1]):
        return None
    period, phase, falls, rises = best
    drops = [points[i][0] for i in range(1, len(points)) if i % period == phase]
    return Finding(
        "accumulation_sawtooth", "accumulation_mismatch",
        f"the gradient norm is a sawtooth of period {period}: it climbs for {period - 1} steps "
        f"and falls back (below {SAW_DROP:g}x the step before) once every {period} steps "
        f"({falls:.0%} of those steps; it rises at {rises:.0%} of the others), while the "
        "weights change at every step",
        steps_text(drops), 0.85,
        f"falls below {SAW_DROP:g}x the step before at >= {SAW_SHARE:.0%} of one phase of a "
        f"period 2-{PERIODS[-1]} seen >= {REPEATS} times, rises at >= {SAW_RISE:.0%} of the "
        "other steps",
        (f"gradients cleared every {period} steps (an accumulation window) while the optimizer "
         "steps every step: each update follows a sum of stale batches",
         "gradient accumulation whose zero_grad() and optimizer.step() run on different "
         "schedules, or that sums micro-batches without dividing by their count"),
        ("read where zero_grad() and optimizer.step() sit: both once per window, together",
         f"count the backwards each .grad holds at a step: 1 to {period}, not always the same"),
        ("loss_fluctuates",), "failure")


def _drawdown(values) -> float:
    """The largest fall below the highest value so far, as a share of that highest."""
    top, worst = values[0], 0.0
    for value in values:
        top = max(top, value)
        worst = max(worst, (top - value) / top if top > 0 else 0.0)
    return worst


def _stepped_once_per_window(log, points, period: int, phase: int) -> bool:
    """Healthy accumulation logged per micro-batch: the weights change only once per window
    (update ratio 0 at the other micro-batches)."""
    ratios = dict(log.finite("update_ratio"))
    inside = [ratios[s] for i, (s, _) in enumerate(points) if i % period != (phase - 1) % period
              and s in ratios]
    return bool(inside) and sum(r == 0.0 for r in inside) >= 0.8 * len(inside)


RULES = (gradients_not_cleared, accumulation_sawtooth)
