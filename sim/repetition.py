"""How repetitive, and how grammatical, generated text is. Plain Python: no torch.

Every metric takes one sample (a sequence of token ids) or a list of them; the list versions
average over samples, because the symptom is a sample that repeats *itself*.

    distinct_n     unique n-grams / all n-grams in a sample (1.0 = nothing repeats)
    repeat_rate    share of a sample's 3-grams that already occurred earlier in that sample
    longest_loop   longest stretch, in tokens, made of at least two back-to-back copies of a
                   shorter block: ...ABCABCABC... -> 9, AAAA -> 4, ABAB -> 4, ABA -> 0
    valid_rate     share of generated transitions (a, b) -> c that the grammar allows
"""
from __future__ import annotations

from statistics import fmean
from typing import Callable, Sequence

Sample = Sequence[int]


def ngrams(sample: Sample, n: int) -> list[tuple[int, ...]]:
    return [tuple(sample[i:i + n]) for i in range(len(sample) - n + 1)]


def distinct_n(sample: Sample, n: int) -> float:
    """Unique n-grams over all n-grams; 1.0 for a sample too short to hold one."""
    grams = ngrams(sample, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repeat_rate(sample: Sample, n: int = 3) -> float:
    """Share of n-grams that are a repeat of an n-gram seen earlier in the same sample."""
    grams = ngrams(sample, n)
    if not grams:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def longest_loop(sample: Sample) -> int:
    """Length of the longest stretch that repeats a shorter block back to back, at least twice.

    For each period p, a stretch where every token equals the one p places earlier, `run`
    tokens long, extends a first copy of p tokens: the loop is p + run tokens, counted only when
    run >= p (two whole copies). 0 when no block repeats.
    """
    best = 0
    for period in range(1, len(sample) // 2 + 1):
        run = 0
        for i in range(period, len(sample)):
            run = run + 1 if sample[i] == sample[i - period] else 0
            if run >= period:
                best = max(best, run + period)
    return best


def valid_rate(sample: Sample, valid: Callable[[int, int, int], bool], start: int = 2) -> float:
    """Share of trigrams (a, b, c) with c at index >= `start` for which `valid(a, b, c)` holds.

    `start` is where generation began (the prompt's own transitions are not the model's).
    """
    checked = [bool(valid(sample[i - 2], sample[i - 1], sample[i]))
               for i in range(max(start, 2), len(sample))]
    return sum(checked) / len(checked) if checked else 1.0


def summarize(samples: Sequence[Sample]) -> dict[str, float]:
    """The metrics averaged over samples; `longest_loop` is the mean of each sample's longest
    loop (one unlucky sample should not decide), `worst_loop` the largest."""
    if not samples:
        return {"distinct_1": 1.0, "distinct_2": 1.0, "repeat_rate": 0.0, "longest_loop": 0.0,
                "worst_loop": 0}
    loops = [longest_loop(s) for s in samples]
    return {
        "distinct_1": fmean(distinct_n(s, 1) for s in samples),
        "distinct_2": fmean(distinct_n(s, 2) for s in samples),
        "repeat_rate": fmean(repeat_rate(s) for s in samples),
        "longest_loop": fmean(loops),
        "worst_loop": max(loops),
    }
