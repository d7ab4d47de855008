"""The shape of the loss curve: spikes, oscillation, slow or no progress, and a period (the
fingerprint of data that is not shuffled)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, median, steps_text, surrogate

SPIKE = 0.5             # the loss jumps >= 50% of its first value above its lowest so far,
                        # for two logged steps or more
OSCILLATE = 0.10        # median step-to-step change in the second half >= 10% of the loss,
                        # while the loss no longer falls by more than that change
OSCILLATE_UPDATE = 1e-2  # ... and the weights move >= 1e-2 of their size per step (if logged)
SLOW_DROP = 0.25        # the loss fell by < 25% of its first value (to the floor, if known) ...
SMOOTH = 0.018          # ... and never rose more than 1.8% of its level above its lowest so far
PERIOD_CORR = 0.5       # autocorrelation of the detrended loss at one lag p >= 2 and at 2p
MIN_STEPS = 10


def _finite_loss(log):
    points = log.finite("loss")
    return points if len(points) >= MIN_STEPS and len(points) == len(log.points("loss")) \
        and not surrogate(log) else None


def loss_spikes(log) -> Finding | None:
    points = _finite_loss(log)
    if not points:
        return None
    start, lowest, high, peak = points[0][1], points[0][1], [], 0.0
    for step, value in points:
        high.append(value - lowest >= SPIKE * start)
        lowest = min(lowest, value)
    # a spike holds for two logged steps or more: one high step alone is a noisy batch
    spikes = [step for i, (step, value) in enumerate(points) if high[i] and (
        (i + 1 < len(points) and high[i + 1]) or (i > 0 and high[i - 1]))]
    if not spikes:
        return None
    peak = max(value for step, value in points if step in set(spikes))
    return Finding(
        "loss_spikes", "lr_too_high",
        f"the loss jumps to {fmt(peak)} (it started at {fmt(start)}) and settles higher than "
        f"a stable run would", steps_text(spikes), 0.8 if spikes[0] < points[-1][0] / 3
        else 0.6, f"loss >= its lowest so far + {SPIKE:.0%} of its first value, for >= 2 "
        "logged steps",
        ("the learning rate is too high: early steps overshoot and the model lands somewhere "
         "worse", "too short a warmup", "no clipping"),
        ("plot loss and grad_norm over the first steps", "an LR range test; lower the lr or "
         "warm up longer"),
        ("bad_lr",), "instability")


def oscillation(log) -> Finding | None:
    points = _finite_loss(log)
    if not points:
        return None
    tail = [v for _, v in points[len(points) // 2:]]
    level = median(tail)
    swing = median([abs(b - a) for a, b in zip(tail, tail[1:])])
    if level <= 0 or swing < OSCILLATE * level:
        return None
    # a loss still coming down by more than its swing is a noisy descent (small batches near
    # a floor of 0, as a ranking loss has), not a swing around a level
    half = len(tail) // 2
    if median(tail[:half]) - median(tail[half:]) > swing:
        return None
    # a swing while the weights barely move is the noise of small batches, which averaging
    # over steps removes; an lr that makes the loss swing moves them (when the log says)
    updates = [v for step, v in log.finite("update_ratio") if step >= points[len(points) // 2][0]]
    if updates and median(updates) < OSCILLATE_UPDATE:
        return None
    return Finding(
        "oscillation", "lr_too_high",
        f"the loss swings by {fmt(swing)} from step to step around {fmt(level)} in the second "
        "half", f"steps {points[len(points) // 2][0]}-{points[-1][0]}", 0.6,
        f"median step-to-step change >= {OSCILLATE:.0%} of the loss, which no longer falls "
        f"by more than that, with a median update/weight ratio >= {OSCILLATE_UPDATE:g}",
        ("the learning rate is too high for the batch size", "a batch too small (noisy "
         "gradients)"),
        ("lower the lr or raise the batch (accumulate)", "plot the update ratio"),
        ("bad_lr",), "instability")


def slow_progress(log) -> Finding | None:
    floor = log.config.get("floor")               # given by the user (--floor), if known
    points = _finite_loss(log)
    if not points or log.out_of_memory:
        return None
    values = [v for _, v in points]
    start, end = median(values[:3]), median(values[-3:])
    reference = floor if floor is not None else 0.0
    if start <= reference:
        return None
    progress = (start - end) / (start - reference)
    lowest, roughness = values[0], 0.0
    for value in values:
        roughness = max(roughness, (value - lowest) / max(lowest, 1e-12))
        lowest = min(lowest, value)
    if progress >= SLOW_DROP or roughness >= SMOOTH:
        return None
    against = f"of the way to the floor {fmt(floor)}" if floor is not None else "of its start"
    return Finding(
        "slow_progress", "not_converged",
        f"the loss fell only {progress:.0%} {against} ({fmt(start)} -> {fmt(end)}), smoothly "
        f"(never more than {roughness:.1%} above its lowest): small, steady steps",
        f"steps {points[0][0]}-{points[-1][0]}", 0.7,
        f"progress < {SLOW_DROP:.0%} and rises < {SMOOTH:.1%} of the loss"
        + (f"; floor {fmt(floor)}" if floor is not None else "; no floor given (--floor)"),
        ("the learning rate is too low", "too few steps for this learning rate",
         "a schedule that decays too early"),
        ("an LR range test (where does the loss start to fall fastest?)",
         "plot the update ratio (||dtheta|| / ||theta||, typically ~1e-3 per step)",
         "train longer and see whether the loss keeps falling"),
        ("bad_lr", "repetitive_decoding"), "inefficiency")


def periodic_loss(log) -> Finding | None:
    points = _finite_loss(log)
    if not points or len(points) < 4 * 3:
        return None
    values = [v for _, v in points]
    window = 5
    trend = [median(values[max(0, i - window):i + window + 1]) for i in range(len(values))]
    residual = [v - t for v, t in zip(values, trend)]
    mean = sum(residual) / len(residual)
    centred = [r - mean for r in residual]
    energy = sum(c * c for c in centred)
    if energy <= 0:
        return None

    def corr(lag: int) -> float:
        return sum(a * b for a, b in zip(centred, centred[lag:])) / energy

    best = max(range(2, len(values) // 4 + 1), key=corr, default=None)
    if best is None or corr(best) < PERIOD_CORR or corr(2 * best) < PERIOD_CORR * 0.8:
        return None
    return Finding(
        "periodic_loss", "unshuffled_data",
        f"the loss repeats with a period of {best} steps (autocorrelation {corr(best):.2f} at "
        f"lag {best}, {corr(2 * best):.2f} at lag {2 * best})",
        f"steps {points[0][0]}-{points[-1][0]}", 0.7,
        f"autocorrelation of the detrended loss >= {PERIOD_CORR} at a lag p and >= "
        f"{PERIOD_CORR * 0.8:.1f} at 2p",
        ("data that is not shuffled: the same order of easy and hard batches every epoch",
         "a sampler or a length-grouped loader with a fixed order"),
        ("check shuffle=True / the sampler; plot the loss against the step within the epoch",),
        (), "inefficiency")


RULES = (loss_spikes, oscillation, slow_progress, periodic_loss)
