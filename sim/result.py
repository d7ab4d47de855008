"""What a run leaves behind: its records, its end, its summary — whatever the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines.base import Prepared


@dataclass
class RunResult:
    prepared: Prepared                 # what was run: scenario, seed, cause, fixes, settings
    status: str                        # completed | oom | error | interrupted
    error: str | None
    records: list[dict]                # one per step (empty for engines without steps)
    end: dict                          # the end record
    summary: dict                      # the scalars a criterion judges
    samples: list[list[int]] = field(default_factory=list)   # generated token ids, if any
    out_dir: Path | None = None
    detail: Any = None                 # engine-specific extra (the planner's MemoryPlan)

    @property
    def scenario_id(self) -> str:
        return self.prepared.scenario.id

    @property
    def seed(self) -> int:
        return self.prepared.seed

    @property
    def cause_id(self) -> str | None:
        return self.prepared.cause_id

    @property
    def fix_ids(self) -> tuple[str, ...]:
        return self.prepared.fix_ids

    @property
    def sets(self) -> dict:
        return dict(self.prepared.sets)

    @property
    def config(self):
        return self.prepared.config

    def series(self, name: str):
        """One per-step signal as a float array (NaN where missing or non-finite)."""
        import numpy as np
        return np.array([_float(r.get(name)) for r in self.records], dtype=float)

    def layer_series(self, layer: str):
        import numpy as np
        return np.array([_float(r["layer_grad_norm"].get(layer)) for r in self.records])


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def overflow_skip(record: dict, config) -> bool:
    """A step that dynamic loss scaling skipped on purpose (overflow at the current scale)."""
    return (getattr(config, "precision", None) == "fp16" and config.loss_scale == "dynamic"
            and not record["updated"] and record["loss"] is not None)


def nonfinite_steps(result: RunResult) -> list[int]:
    """Steps with a non-finite loss or gradient, deliberate loss-scaler skips left out."""
    return [r["step"] for r in result.records
            if r.get("nonfinite") and not overflow_skip(r, result.config)]


def end_note(result: RunResult) -> str:
    """One line on how the run ended, for probes and plots that have nothing else to say."""
    steps = len(result.records)
    if result.status == "oom":
        return f"the run ran out of memory at step {steps}: {result.error}"
    if result.status == "error":
        return f"the run crashed at step {steps}: {result.error}"
    if result.status == "interrupted":
        return f"the run was interrupted after {steps} steps"
    return f"the run completed {steps} steps"
