"""Shared helpers of the probes: finding records, rebuilding a run, formatting."""
from __future__ import annotations

import dataclasses
import math

from ..runner import RunResult, overflow_skip


NONFINITE_MARK = "NaN!"            # how the table shows a value that was NaN or +-inf


class ProbeError(ValueError):
    """A probe argument that cannot be answered (e.g. a step the run never reached)."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nonfinite_steps(result: RunResult) -> list[int]:
    """Steps with a non-finite loss or gradient, deliberate loss-scaler skips left out."""
    return [r["step"] for r in result.records
            if r.get("nonfinite") and not overflow_skip(r, result.config)]


def end_note(result: RunResult) -> str:
    """One line on how the run ended, for probes that have nothing else to say."""
    steps = len(result.records)
    if result.status == "oom":
        return f"the run ran out of memory at step {steps}: {result.error}"
    if result.status == "error":
        return f"the run crashed at step {steps}: {result.error}"
    if result.status == "interrupted":
        return f"the run was interrupted after {steps} steps"
    return f"the run completed {steps} steps"


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


def scenario_of(result: RunResult, scenario=None):
    """The scenario a run came from: the one given, else the registered one, else None."""
    if scenario is not None:
        return scenario
    from .. import registry
    try:
        return registry.get(result.scenario_id)
    except registry.UnknownScenario:
        return None


def _rebuild(result: RunResult, scenario=None):
    """The run's config and fresh instances of its fault/fix callbacks, and a note if the
    callbacks could not be rebuilt (scenario not registered and not given)."""
    from ..runner import assemble
    scenario = scenario_of(result, scenario)
    if scenario is None:
        if result.cause_id is None and not result.fix_ids:
            return result.config, [], None      # a base run: there are no callbacks to rebuild
        return result.config, [], (f"scenario '{result.scenario_id}' is not registered (pass "
                                   "scenario=...); replayed the config without its callbacks")
    try:
        _, callbacks = assemble(scenario, result.seed, result.cause_id, result.fix_ids,
                                result.sets)
    except Exception as error:
        return result.config, [], f"could not rebuild the run's callbacks ({error})"
    return result.config, callbacks, None


def _untracked(config):
    """Same numerics, no simulated memory accounting (faster; replays never go out of memory)."""
    return dataclasses.replace(config, track_memory=False, memory_budget_mib=0.0)


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
