"""A training log as the doctor reads it: named series of (step, value), whatever the format.

Names are debugsim's: loss, grad_norm, lr, update_ratio, param_norm, eval_loss, mem_mib,
nonfinite; for RLHF, kl, kl_penalty and reward. Values are floats; NaN and inf are kept (they are what the doctor looks for). `end`
holds what a log says about how the run ended, when it says it (debugsim's end record:
status, error)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TrainingLog:
    source: str                                       # the path read
    format: str                                       # "debugsim metrics.jsonl", ...
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    end: dict = field(default_factory=dict)           # status, error (when the log says)
    config: dict = field(default_factory=dict)        # eval_every, memory_budget_mib, ...

    def add(self, name: str, step: int, value) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        self.series.setdefault(name, []).append((int(step), float(value)))

    def points(self, name: str) -> list[tuple[int, float]]:
        return sorted(self.series.get(name, []))

    def values(self, name: str) -> list[float]:
        return [v for _, v in self.points(name)]

    def finite(self, name: str) -> list[tuple[int, float]]:
        return [(s, v) for s, v in self.points(name) if math.isfinite(v)]

    @property
    def steps(self) -> list[int]:
        return sorted({s for points in self.series.values() for s, _ in points})

    @property
    def out_of_memory(self) -> bool:
        text = f"{self.end.get('status', '')} {self.end.get('error') or ''}".lower()
        return "oom" in text.split() or "out of memory" in text

    def summary(self) -> str:
        names = ", ".join(f"{n} ({len(p)})" for n, p in sorted(self.series.items()))
        return f"{self.format}: {len(self.steps)} steps; series {names or 'none'}"
