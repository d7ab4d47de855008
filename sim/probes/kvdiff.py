"""Cached vs uncached decoding, step by step: the standard test of a KV cache.

The run's prompts are decoded again without the cache (every step re-reads the whole prefix),
with the same training and the same decoding settings. For each request and step, while both
decodes still share their prefix, it shows the largest difference between the two next-token
logits, and how many keys the cache held after the step.
"""
from __future__ import annotations

from ..result import RunResult

TOLERANCE = 1e-4        # float32 noise between a cached and an uncached pass is ~1e-6


def uncached(result: RunResult) -> RunResult:
    """The same run decoded without the KV cache (training shared, decoding redone)."""
    from .. import runs
    prepared = result.prepared
    return runs.execute(prepared.with_fixes(prepared.fix_ids,
                                            {**prepared.sets, "kv_cache": False}))


def cache_divergence(result: RunResult) -> list[dict] | None:
    """Per request: `diffs` (the largest |cached - uncached| next-token logit per step, None
    once the two decodes have produced different tokens), `first` (the first step whose
    difference exceeds TOLERANCE, or None), `row_first` (the same, prompt by prompt),
    `words` (each prompt's length in words: shorter ones were left-padded), `cache_keys`
    (keys held after each step) and `rows`. None when the run has no cached decode to compare."""
    from ..decoding import shown_prompts
    detail = result.detail or {}
    if not any(detail.get("cache_keys") or ()):
        return None
    reference = uncached(result)
    if not (reference.detail or {}).get("cache_keys"):
        return None
    cached, plain = detail["step_logits"], reference.detail["step_logits"]
    total, count = cached.shape[0], len(detail["cache_keys"])
    sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]   # tensor_split
    words = [len(p) for p in shown_prompts(result.config, total)]
    per_row = [_row_diffs(result, reference, cached, plain, row) for row in range(total)]
    out, start = [], 0
    for held, size in zip(detail["cache_keys"], sizes):
        rows = range(start, start + size)
        start = rows.stop
        # a request's step: its largest difference, while all its prompts share their prefix
        diffs = [max(d) if None not in d else None for d in zip(*(per_row[r] for r in rows))]
        out.append({"rows": size, "diffs": diffs, "first": _first(diffs),
                    "row_first": [_first(per_row[r]) for r in rows],
                    "words": [words[r] for r in rows], "cache_keys": held})
    return out


def _row_diffs(result, reference, cached, plain, row: int) -> list[float | None]:
    """One prompt's largest |logit difference| per step, None once its tokens differ."""
    return [float((cached[row, step] - plain[row, step]).abs().max())
            if result.samples[row][:step] == reference.samples[row][:step] else None
            for step in range(cached.shape[1])]


def _first(diffs: list[float | None]) -> int | None:
    return next((s for s, d in enumerate(diffs) if d is None or d > TOLERANCE), None)


def first_divergent_steps(result: RunResult) -> tuple | None:
    """The first divergent step of each request (None where the two decodes agree)."""
    found = cache_divergence(result)
    return None if found is None else tuple(request["first"] for request in found)


def divergent_prompts(result: RunResult) -> tuple | None:
    """Per request, the first divergent step of each of its prompts, as (words, step) pairs."""
    found = cache_divergence(result)
    return None if found is None else tuple(tuple(zip(r["words"], r["row_first"]))
                                            for r in found)


def render_cache_divergence(result: RunResult) -> str:
    found = cache_divergence(result)
    if found is None:
        return ("nothing to compare: this run decoded without the KV cache"
                if result.status == "completed" else f"no decoding: the run ended with status "
                f"'{result.status}'")
    lines = [f"cached vs uncached decoding of the same {sum(r['rows'] for r in found)} prompts "
             f"({len(found)} requests, served in turn): max |logit difference| per step",
             "('-' once the two decodes wrote different tokens; keys: what the cache held "
             "after the step)",
             "  step" + "".join(f"   req{i + 1} max|d|  keys" for i in range(len(found)))]
    for step in range(len(found[0]["diffs"])):
        cells = []
        for request in found:
            diff = request["diffs"][step]
            cells.append(f"{'-' if diff is None else format(diff, '.2e'):>15}"
                         f"{request['cache_keys'][step]:>6}")
        lines.append(f"  {step:>4}" + "".join(cells))
    lines.append("first step whose logits differ by more than "
                 f"{TOLERANCE:g}: " + ", ".join(
                     f"req{i + 1} {'none' if r['first'] is None else r['first']}"
                     for i, r in enumerate(found)))
    lines.append("the same, prompt by prompt (words in the prompt: first step; shorter prompts "
                 "are left-padded to the request's longest):")
    for i, request in enumerate(found):
        lines.append(f"  req{i + 1}: " + "   ".join(
            f"{words}w: {'none' if first is None else first}"
            for words, first in zip(request["words"], request["row_first"])))
    return "\n".join(lines)


NAME = "kvdiff"
USAGE = "kvdiff"
HELP = "decode again without the KV cache and compare the logits step by step"
ENGINES = ("training",)
ORDER = 85


def available(scenario) -> bool:
    return scenario.generates_text


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_cache_divergence(result)
