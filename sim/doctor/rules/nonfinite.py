"""Non-finite values (NaN, inf) in the loss or the gradient norm, and how they arrived: from
the first steps, isolated among healthy steps, or after a climb."""
from __future__ import annotations

import math

from ..findings import Finding
from ._stats import fmt, median, steps_text

FROM_START = 2          # the first non-finite step is at most this many logged steps in
PERSISTENT = 0.5        # ... and at least this share of the steps from there on are bad
CLIMB = 10.0            # grad norm before the first bad step >= 10x its early median, or
LOSS_CLIMB = 1.5        # loss before it >= 1.5x its lowest value so far


def bad_steps(log) -> list[int]:
    bad = {s for name in ("loss", "grad_norm") for s, v in log.points(name)
           if not math.isfinite(v)}
    bad |= {s for s, v in log.points("nonfinite") if v > 0}
    return sorted(bad)


def nonfinite(log) -> Finding | None:
    bad = bad_steps(log)
    if not bad:
        return None
    steps = log.steps
    first = bad[0]
    index = steps.index(first)
    after = [s for s in steps if s >= first]
    share = len(bad) / len(after)
    seen = f"non-finite loss or gradient norm at {len(bad)} of {len(steps)} logged steps"
    if index <= FROM_START and share >= PERSISTENT:
        return Finding(
            "nonfinite", "nonfinite_from_start",
            f"{seen}, from the first steps on (step {first}); there was no climb before it",
            steps_text(bad, steps), 0.9,
            f"first bad step within the first {FROM_START + 1} logged steps and >= "
            f"{PERSISTENT:.0%} of the steps after it bad",
            ("an operation that is NaN for some inputs on every batch: softmax over a fully "
             "masked attention row (all -inf), log(0), 0/0 in a normalisation",
             "padding or masking that is wrong for some rows", "fp16 overflow from the start",
             "a bad initialisation"),
            ("run the first step under torch.autograd.detect_anomaly(check_nan=True) and read "
             "which backward Function returned NaN", "check the first batch: padding side, "
             "masks, rows with no valid key or no supervised token"),
            ("nan_loss",), "failure")
    if share < PERSISTENT and _recovers(log, bad):
        return Finding(
            "nonfinite", "nonfinite_isolated",
            f"{seen}, isolated: the loss is healthy on the steps around them",
            steps_text(bad, steps), 0.85 if len(bad) <= 0.2 * len(steps) else 0.6,
            f"< {PERSISTENT:.0%} of the steps after the first bad one are bad and the loss "
            "returns to its level",
            ("a particular batch: no supervised tokens (0/0 in a token mean), an empty or "
             "all-padding sequence, a corrupt sample",
             "an unguarded division or log in the loss"),
            ("look at the batch at a bad step: how many supervised tokens, padding, lengths",
             "guard the loss's denominator (clamp(min=1)) and check the data pipeline"),
            ("nan_loss",), "failure")
    climb = _climb(log, first)
    if climb:
        return Finding(
            "nonfinite", "divergence",
            f"{seen}, from step {first} on, after a climb: {climb}",
            steps_text(bad, steps), 0.9,
            f"grad norm before the first bad step >= {CLIMB:g}x its early median, or the loss "
            f">= {LOSS_CLIMB:g}x its lowest value",
            ("the learning rate is too high (or a schedule that keeps raising it)",
             "no gradient clipping", "fp16 overflow as values grow"),
            ("plot lr, grad_norm and the update ratio up to the first bad step",
             "lower the learning rate or fix the schedule; add clipping (grad_clip=1.0)"),
            ("nan_loss", "bad_lr"), "failure")
    return Finding(
        "nonfinite", "nonfinite_sudden",
        f"{seen}, from step {first} on, without a climb before it", steps_text(bad, steps), 0.5,
        f"neither from the start nor isolated nor after a climb (>= {CLIMB:g}x grad norm)",
        ("one bad batch whose NaN reached the weights (every step after is NaN)",
         "an op that overflows for some inputs", "fp16 overflow"),
        ("run the first bad step under anomaly detection", "look at that step's batch"),
        ("nan_loss",), "failure")


def _recovers(log, bad) -> bool:
    """Whether the finite loss right after each bad stretch is near the loss before it."""
    loss = dict(log.finite("loss"))
    if not loss:
        return False
    steps = sorted(loss)
    for step in bad:
        before = [loss[s] for s in steps if s < step][-3:]
        after = [loss[s] for s in steps if s > step][:3]
        if after and before and median(after) > 1.5 * median(before):
            return False
        if not after and step != bad[-1]:
            return False
    return any(s > bad[-1] for s in steps)


def _climb(log, first: int) -> str:
    grads = [v for s, v in log.finite("grad_norm") if s < first]
    if len(grads) >= 4:
        early = median(grads[:max(3, len(grads) // 4)])
        late = max(grads[-5:])
        if early > 0 and late >= CLIMB * early:
            lr = [v for s, v in log.finite("lr") if s < first]
            lr_text = (f"; lr {fmt(lr[0])} -> {fmt(lr[-1])}" if lr and lr[-1] > 1.5 * lr[0]
                       else "")
            return f"grad norm {fmt(early)} early, {fmt(late)} just before{lr_text}"
    losses = [v for s, v in log.finite("loss") if s < first]
    if len(losses) >= 4 and losses[-1] >= LOSS_CLIMB * min(losses):
        return f"loss {fmt(min(losses))} at its lowest, {fmt(losses[-1])} just before"
    return ""


RULES = (nonfinite,)
