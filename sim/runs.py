"""Executing prepared runs, with an in-process cache.

Runs are deterministic: two prepared runs with the same engine config and the same fault/fix
code give identical records. So grading many answers, or a verdict matrix where many fixes
leave a cause's run unchanged, re-runs each distinct run once per process.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

from . import parallel
from .engines.base import Prepared, RunOptions
from .result import RunResult

CACHE_SIZE = 512
_cache: OrderedDict[tuple, RunResult] = OrderedDict()


def execute(prepared: Prepared, out_dir: Path | None = None,
            options: RunOptions = RunOptions()) -> RunResult:
    """Run `prepared`; served from the cache unless it must write files or print live."""
    key = (*prepared.cache_key(), bool(options.track_memory))
    if out_dir is None and not options.live and key in _cache:
        _cache.move_to_end(key)
        return dataclasses.replace(_cache[key], prepared=prepared)
    result = prepared.engine.execute(prepared, out_dir, options)
    _cache[key] = dataclasses.replace(result, out_dir=None)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def execute_pair(first: Prepared, second: Prepared, out_dir: Path | None = None,
                 options: RunOptions = RunOptions()) -> tuple[RunResult, RunResult]:
    """`execute(first)` and `execute(second, out_dir, options)`. When both must really run,
    share no work and the machine has a core to spare (`parallel.available`), `first` runs
    in a forked process while `second` runs here: the same results in about the time of the
    longer one (grading's broken and fixed runs)."""
    if not _overlap(first, second, out_dir, options):
        return execute(first), execute(second, out_dir, options)
    handle = parallel.start(_run_fields, first)
    try:
        after = execute(second, out_dir, options)
    except BaseException:
        handle.cancel()
        raise
    before = RunResult(first, *handle.result())
    _cache[(*first.cache_key(), False)] = before
    return before, after


def _overlap(first: Prepared, second: Prepared, out_dir, options: RunOptions) -> bool:
    independent = getattr(first.engine, "independent", None)
    cached = ((*first.cache_key(), False) in _cache
              or (out_dir is None and not options.live
                  and (*second.cache_key(), bool(options.track_memory)) in _cache))
    return (not cached and first.engine is second.engine and independent is not None
            and independent(first, second) and parallel.available())


def _run_fields(prepared: Prepared) -> tuple:
    """What a child sends back: the result without `prepared` (the parent has it)."""
    result = prepared.engine.execute(prepared)
    return (result.status, result.error, result.records, result.end, result.summary,
            result.samples, None, result.detail)


def clear_cache() -> None:
    from . import engines
    _cache.clear()
    engines.clear_caches()
