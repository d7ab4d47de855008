"""Executing prepared runs, with an in-process cache.

Runs are deterministic: two prepared runs with the same engine config and the same fault/fix
code give identical records. So grading many answers, or a verdict matrix where many fixes
leave a cause's run unchanged, re-runs each distinct run once per process.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

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


def clear_cache() -> None:
    from . import engines
    _cache.clear()
    engines.clear_caches()
