"""Small statistics the rules share (no numpy: logs are short)."""
from __future__ import annotations

import statistics


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def slope(points) -> float:
    """Least-squares slope of (step, value) points (0 for fewer than two)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def steps_text(steps, logged=None) -> str:
    """'12, 25' or '23-39 (17 steps)' or '3, 9, 15, ... 40 (8 steps)'; with `logged` (the log's
    steps), a run of consecutive logged steps is a range too: '120-200 (9 logged steps)'."""
    steps = sorted(steps)
    if not steps:
        return "-"
    if len(steps) > 2 and steps[-1] - steps[0] == len(steps) - 1:
        return f"{steps[0]}-{steps[-1]} ({len(steps)} steps)"
    if len(steps) > 2 and logged and steps[0] in logged and \
            logged[logged.index(steps[0]):logged.index(steps[0]) + len(steps)] == steps:
        return f"{steps[0]}-{steps[-1]} ({len(steps)} logged steps)"
    if len(steps) <= 4:
        return ", ".join(map(str, steps))
    return f"{', '.join(map(str, steps[:3]))}, ... {steps[-1]} ({len(steps)} steps)"


def fmt(value: float) -> str:
    return f"{value:.3g}"


def surrogate(log) -> bool:
    """A policy gradient's loss (-advantage * log pi) is a surrogate objective: its value moves
    with the batch's advantages, not with progress, so the loss's shape says nothing there.
    Told by the log: a KL or reward series beside it (an RL run's), or a loss that goes below 0
    (a likelihood or ranking loss never does)."""
    return bool(log.finite("kl") or log.finite("reward")) or \
        any(value < 0 for _, value in log.finite("loss"))
