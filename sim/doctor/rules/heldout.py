"""Losses that are better than the data allows (the target leaks into what the model sees),
and a held-out loss that does not follow the training loss at all (evaluation scores what
training never teaches)."""
from __future__ import annotations

import math

from ..findings import Finding
from ._stats import fmt, median, steps_text, surrogate

COLLAPSE = 0.02         # the training loss ends below 2% of where it started (not judged for
PAIRWISE_START = 0.01   # a pairwise loss: one whose first value is within 0.01 of ln 2)
UNDER_FLOOR = 0.03      # the held-out loss ends >= 3% below the floor (when it is given)
LEARNT = 0.8            # the training loss ended at <= 80% of its start ...
NO_TRANSFER = 0.8       # ... but the held-out loss ends at >= 80% of the training loss's start
GAP = 1.5               # ... and >= 1.5x the training loss's end
MIN_STEPS = 10


def _pairwise(points) -> bool:
    """A pairwise preference loss (a reward model's ranking loss, DPO's): it starts at ln 2,
    where the two answers of a pair score alike, and falls toward 0 whenever the pairs are
    separable, so a loss near 0 says nothing about leakage there."""
    return abs(points[0][1] - math.log(2)) <= PAIRWISE_START


def _ends(log):
    points = log.finite("loss")
    if len(points) < MIN_STEPS or surrogate(log):
        return None
    values = [v for _, v in points]
    return points, median(values[:3]), median(values[-5:])


def leakage(log) -> Finding | None:
    ends = _ends(log)
    if not ends:
        return None
    points, start, end = ends
    evals = log.finite("eval_loss")
    held = evals[-1][1] if evals else None
    floor = log.config.get("floor")
    collapsed = start > 0 and end < COLLAPSE * start and not _pairwise(points)
    under = floor is not None and held is not None and held < floor * (1 - UNDER_FLOOR)
    if not collapsed and not under:
        return None
    seen, where, confidence = [], f"steps {points[0][0]}-{points[-1][0]}", 0.7
    if collapsed:
        since = next(s for s, v in points if v < COLLAPSE * start)
        seen.append(f"the training loss falls to {fmt(end)} ({end / start:.1%} of its start "
                    f"{fmt(start)}) from step {since} on")
        where = f"steps {since}-{points[-1][0]}"
    if held is not None and collapsed:
        seen.append(f"the held-out loss ends at {fmt(held)}"
                    + (": near zero too, on data it has not seen" if held < 0.1 * start else
                       ": far above: it learnt a task that real next tokens do not pose"
                       if held > start else ""))
        confidence = 0.9 if held < 0.1 * start or held > start else 0.8
    if under:
        below = [s for s, v in evals if v < floor * (1 - UNDER_FLOOR)]
        where = where if collapsed else steps_text(below) + " (held-out evaluations)"
        seen.append(f"the held-out loss ends at {fmt(held)}, below the floor {fmt(floor)}: no "
                    "model can do better than the floor on data it has not seen")
        confidence = 0.9 if collapsed else 0.85
    return Finding(
        "leakage", "leakage", "; ".join(seen), where, confidence,
        f"training loss < {COLLAPSE:.0%} of its start (unless it starts at ln 2: a pairwise loss)"
        + (f", or the held-out loss >= {UNDER_FLOOR:.0%} below the floor {fmt(floor)}"
           if floor is not None else "; no floor given (--floor): held-out loss not judged"),
        ("the model sees what it is scored on: targets not shifted (each label is the input "
         "at its own position), a causal mask or an input window off by one that shows each "
         "position the token it predicts",
         "held-out rows that are also in the training set (a split the loader ignores, "
         "duplicates across the split)",
         "(a small classification set can be memorised to a near-zero training loss: then the "
         "held-out loss stays well above it)"),
        ("compare the losses with the data's entropy floor (--floor): a held-out loss can never "
         "go below it", "print one batch's inputs and targets side by side: is each target "
         "the next token, unseen by its position?",
         "check that no held-out row is in the training set",
         "generate: a model that only copies what it sees writes nonsense or one token"),
        ("too_good_to_be_true", "sft_label_mask"), "failure")


def train_eval_mismatch(log) -> Finding | None:
    ends = _ends(log)
    evals = log.finite("eval_loss")
    if not ends or not evals:
        return None
    points, start, end = ends
    held = evals[-1][1]
    if start <= 0 or end < COLLAPSE * start or end > LEARNT * start or \
            held < NO_TRANSFER * start or held < GAP * end:
        return None
    rising = len(evals) >= 3 and evals[-1][1] > min(v for _, v in evals) * 1.1
    return Finding(
        "train_eval_mismatch", "train_eval_mismatch",
        f"the training loss fell {fmt(start)} -> {fmt(end)}, but the held-out loss ends at "
        f"{fmt(held)} (step {evals[-1][0]}): no better than the untrained model's loss; what "
        "training learnt does not show on the held-out set"
        + ("; the held-out loss rose after its lowest point" if rising else ""),
        f"steps {points[0][0]}-{points[-1][0]}", 0.75,
        f"training loss ends <= {LEARNT:.0%} of its start; the held-out loss ends >= "
        f"{NO_TRANSFER:.0%} of that start and >= {GAP:g}x the training loss's end",
        ("the held-out loss scores tokens the training loss never labels: an end-of-sequence "
         "token missing from the template, left out of the label mask, or masked with the "
         "padding (pad token = EOS)",
         "training and evaluation build examples differently (template, tokenizer, shift)",
         "overfitting a tiny training set (the held-out loss then rises during training)"),
        ("print one training example's labels token by token: is the end-of-sequence token "
         "there, and labelled?", "run the evaluation on a training batch: does it give the "
         "training loss?", "log the held-out loss during training (eval_every)"),
        ("sft_label_mask", "never_stops"), "failure")


RULES = (leakage, train_eval_mismatch)
