"""Shared helpers of the probes: finding records, rebuilding a run, formatting."""
from __future__ import annotations

import dataclasses
import math

from ..result import RunResult, end_note, nonfinite_steps  # noqa: F401 (re-exported)


NONFINITE_MARK = "NaN!"            # how the table shows a value that was NaN or +-inf


class ProbeError(ValueError):
    """A probe argument that cannot be answered (e.g. a step the run never reached)."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _record_at(result: RunResult, step: int) -> dict:
    if not result.records:
        raise ProbeError(f"no steps were recorded: {end_note(result)}")
    first, last = result.records[0]["step"], result.records[-1]["step"]
    if step < 0:
        step = last + 1 + step
    for record in result.records:
        if record["step"] == step:
            return record
    raise ProbeError(f"step {step} is not in this run (recorded steps {first}..{last})")


def _rebuild(result: RunResult):
    """The run's config and fresh instances of its fault/fix callbacks, and a note when the
    run was read back from a folder (which keeps the config, never the code that ran)."""
    prepared = result.prepared
    note = None if prepared.complete else (
        "this run was read back from its folder: replayed its config without the code "
        "changes that ran")
    return prepared.config, [factory() for factory in prepared.callbacks], note


def _untracked(config):
    """Same numerics, no memory budget: replays are not tracked and never run out of memory."""
    return dataclasses.replace(config, memory_budget_mib=0.0)


def _overrides(cls_method_name: str, callback) -> bool:
    from ..callbacks import Callback
    return getattr(type(callback), cls_method_name, None) is not getattr(Callback,
                                                                         cls_method_name)


class _Stop(Exception):
    """Raised by a probe's callback to end a replayed run early."""


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return format(value, spec)


def int_arg(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProbeError(f"{what} must be a whole number, not '{text}'") from None


def step_arg(args: list[str], example: str) -> int:
    """The STEP argument of a probe, or a one-line error with an example."""
    if not args:
        raise ProbeError(f"which step? e.g. '{example}'")
    return int_arg(args[0], "the step")
