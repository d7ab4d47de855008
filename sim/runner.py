"""Run a scenario: assemble config and callbacks from cause and fixes, train, measure, save.

This is the engine's front door for notebooks as much as for the CLI:

    >>> from debugsim.sim import runner, registry
    >>> result = runner.execute(registry.get("nan_loss"), seed=3)
    >>> result.series("loss"), result.summary["final_loss"]
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import TrainConfig, with_overrides
from .scenario import Scenario

TAIL = 8   # steps at the end over which the final loss and its swing are measured


@dataclass
class RunResult:
    scenario_id: str
    seed: int
    cause_id: str | None
    fix_ids: tuple[str, ...]
    sets: dict[str, Any]
    config: TrainConfig
    status: str                        # completed | oom | error | interrupted
    error: str | None
    records: list[dict]
    end: dict
    summary: dict
    samples: list[list[int]] = field(default_factory=list)   # generated token ids, if any
    out_dir: Path | None = None
    plan: Any = None                   # planner scenarios: the MemoryPlan that was judged

    def series(self, name: str):
        """One per-step signal as a float array (NaN where missing or non-finite)."""
        import numpy as np
        return np.array([_float(r.get(name)) for r in self.records], dtype=float)

    def layer_series(self, layer: str):
        import numpy as np
        return np.array([_float(r["layer_grad_norm"].get(layer)) for r in self.records])


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def parse_settings(scenario: Scenario, pairs: Sequence[str]) -> dict[str, Any]:
    """Free-form `key=value` settings, parsed for the scenario's engine (ConfigError if bad)."""
    if scenario.engine == "planner":
        from .memplan.exercise import parse_settings as parse_plan_settings
        return parse_plan_settings(pairs)
    from .config import parse_assignments
    return parse_assignments(pairs)


def validate(scenario: Scenario, seed: int, cause_id, fix_ids=(), sets=None) -> None:
    """Raise ConfigError now, before any work, if the combination cannot run."""
    if scenario.engine == "planner":
        from .memplan.exercise import assemble_plan
        assemble_plan(scenario, cause_id, fix_ids, sets)
    else:
        assemble(scenario, seed, cause_id, fix_ids, sets)


def assemble(scenario: Scenario, seed: int, cause_id: str | None, fix_ids: Sequence[str] = (),
             sets: Mapping[str, Any] | None = None):
    """The config and the callback instances for a cause with fixes and free-form settings."""
    cause = scenario.cause(cause_id) if cause_id else None
    fixes = [scenario.fix(fix_id) for fix_id in fix_ids]
    overrides: dict[str, Any] = {**scenario.base, "seed": seed}
    factories = list(cause.fault.callbacks) if cause else []
    if cause:
        overrides.update(cause.fault.config)
    for fix in fixes:
        overrides.update(fix.config)
        for key, factor in fix.scale.items():
            current = overrides.get(key, getattr(TrainConfig(), key))
            overrides[key] = current * factor
        factories = [f for f in factories if f not in fix.repairs]
        factories.extend(fix.callbacks)
    overrides.update(sets or {})
    config = with_overrides(TrainConfig(), overrides)
    return config, [factory() for factory in factories]


def execute(scenario: Scenario, seed: int, cause_id: str | None = None,
            fix_ids: Sequence[str] = (), sets: Mapping[str, Any] | None = None,
            out_dir: str | Path | None = None, listeners=()) -> RunResult:
    """Train the scenario with the given cause (None = healthy base) and fixes; never raises for
    a training failure (out of memory, non-finite values): those are the result."""
    if scenario.engine == "planner":
        from .memplan.exercise import execute_plan
        return execute_plan(scenario, seed, cause_id, fix_ids, sets, out_dir)
    from .device import SimulatedOutOfMemory
    from .loop import train
    from .telemetry import Recorder

    import torch
    torch.set_num_threads(1)   # tiny ops: one thread is faster, and results do not vary
    config, callbacks = assemble(scenario, seed, cause_id, fix_ids, sets)
    out = Path(out_dir) if out_dir else None
    header = {"scenario": scenario.id, "seed": seed, "fixes": list(fix_ids),
              "sets": dict(sets or {})}
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "config.json", json.dumps(
            {**header, "config": config.to_dict()}, indent=2) + "\n")
    recorder = Recorder(header, out, listeners)
    run = None
    try:
        run = train(config, [recorder, *callbacks])
    except SimulatedOutOfMemory:
        pass                          # recorded by the Recorder: status "oom" and the message
    except KeyboardInterrupt:
        raise
    except Exception as error:        # a fault may crash the loop; that is a result too
        recorder.end = {**getattr(recorder, "end", {}), "status": "error", "error": str(error)}
    result = RunResult(scenario.id, seed, cause_id, tuple(fix_ids), dict(sets or {}), config,
                       recorder.end["status"], recorder.end.get("error"), recorder.records,
                       recorder.end, {}, out_dir=out)
    if run is not None and scenario.generates_text and result.status == "completed":
        from .decoding import sample_and_measure
        result.samples, text_metrics = sample_and_measure(run, callbacks)
        result.summary.update(text_metrics)
    result.summary = {**summarize(result), **result.summary}
    if out:
        write_atomic(out / "summary.json", json.dumps(result.summary, indent=2) + "\n")
    return result


def summarize(result: RunResult) -> dict:
    """The scalars a criterion judges: final loss, swing, non-finite steps, memory, ..."""
    records = result.records
    losses = [r["loss"] for r in records]
    tail = losses[-TAIL:]
    finite_tail = all(v is not None for v in tail) and bool(tail)
    nonfinite = [r for r in records if r["nonfinite"] and not overflow_skip(r, result.config)]
    suppressed = [r for r in nonfinite if not r["updated"]]
    evals = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    oom = None
    if result.status == "oom":
        oom = {"step": len(records), "message": result.error}
    return {
        "status": result.status,
        "steps_completed": len(records),
        "final_loss": statistics.fmean(tail) if finite_tail else float("nan"),
        "loss_swing": statistics.pstdev(tail) if finite_tail and len(tail) > 1 else float("nan"),
        "eval_loss": evals[-1] if evals and result.status == "completed" else float("nan"),
        "nonfinite_steps": len(nonfinite),
        "first_nonfinite_step": nonfinite[0]["step"] if nonfinite else None,
        "suppressed_steps": len(suppressed),
        "peak_memory_mb": result.end.get("peak_mib") or 0.0,
        "sequences_seen": len(records) * result.config.batch_size * result.config.grad_accum_steps,
        "oom": oom,
    }


def overflow_skip(record: dict, config: TrainConfig) -> bool:
    """A step that dynamic loss scaling skipped on purpose (overflow at the current scale)."""
    return (config.precision == "fp16" and config.loss_scale == "dynamic"
            and not record["updated"] and record["loss"] is not None)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
