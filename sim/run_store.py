"""Finished runs kept on disk in the debugsim home, so a later command need not train them again.

A learner runs or plays an incident, then checks one fix, then another: every `check` needs the
broken run, which is the same run each time. `debugsim run`, `play` and `check` keep the runs
they finish here (`cache/runs/<digest>.pickle`), and `check` takes the broken run from here when
it is there: each check then trains once (the fixed run) instead of twice.

Engines opt in with `keeps_runs = True` (training does; the planner is instant). A run is
looked up by everything it depends on: the engine and its config (seed and hidden
implementations included), the fault and fix code, the scenario (registered ones only: a
scratch scenario may reuse an id), torch's version, and the source of the whole package (any
change to debugsim's code and the old runs are never read again). Runs are deterministic, so a
kept run is the run a fresh one would be (tested byte for byte); a file that cannot be read is
ignored and replaced. Files are written atomically; the newest `KEEP` are kept.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
from pathlib import Path

from .engines.base import Prepared
from .files import write_bytes_atomic
from .result import RunResult
from .training_code import source_digest

KEEP = 200


def load(prepared: Prepared) -> RunResult | None:
    """The kept run of `prepared` (without its folder), or None."""
    path = _path(prepared)
    if path is None:
        return None
    try:
        fields = pickle.loads(path.read_bytes())
        result = RunResult(prepared, *fields)
    except FileNotFoundError:
        return None
    except Exception:                      # truncated, foreign or from another layout
        path.unlink(missing_ok=True)
        return None
    os.utime(path)                         # recently used: kept longer
    return result


def save(result: RunResult) -> None:
    """Keep a finished run (one interrupted by the learner is not kept). A home that cannot
    be written to only costs the time to train it again."""
    path = _path(result.prepared)
    if path is None or result.status == "interrupted":
        return
    fields = (result.status, result.error, result.records, result.end, result.summary,
              result.samples, None, result.detail)
    try:
        write_bytes_atomic(path, pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL))
        _prune(path.parent)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass


def _path(prepared: Prepared) -> Path | None:
    from . import registry
    from .home import home
    scenario = prepared.scenario
    if not (getattr(prepared.engine, "keeps_runs", False) and prepared.complete
            and registry.get(scenario.id) is scenario):
        return None
    code = [f"{f.__module__}.{f.__qualname__}" if isinstance(f, type) else repr(f)
            for f in prepared.callbacks]
    key = json.dumps([prepared.engine.name, scenario.id, prepared.engine.config_key(prepared),
                      code, importlib.metadata.version("torch"), source_digest()])
    return home() / "cache" / "runs" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"


def _prune(folder: Path) -> None:
    files = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)
