"""The grader: check the named cause, then re-run the incident with the fix.

The verdict on a fix comes only from the re-run's telemetry judged by the scenario's criterion:
- resolved      every check passes;
- masked        the only failing check is "finite", and every non-finite step was silently
                skipped: the run looks healthy but the fault still fires;
- not_resolved  anything else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import runs
from .engines.base import Prepared, RunOptions
from .result import RunResult
from .scenario import Check


@dataclass
class Verdict:
    scenario_id: str
    seed: int
    actual_cause: str
    named_cause: str | None
    cause_correct: bool
    fix_ids: tuple[str, ...]
    sets: dict
    fix_verdict: str                 # resolved | not_resolved | masked
    passed: bool
    before_checks: list[Check]
    after_checks: list[Check]
    before: RunResult
    after: RunResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario_id, "seed": self.seed, "passed": self.passed,
            "cause_correct": self.cause_correct, "named_cause": self.named_cause,
            "actual_cause": self.actual_cause, "fixes": list(self.fix_ids), "sets": self.sets,
            "fix_verdict": self.fix_verdict,
            "before": {"summary": self.before.summary,
                       "checks": [asdict(c) for c in self.before_checks]},
            "after": {"summary": self.after.summary,
                      "checks": [asdict(c) for c in self.after_checks]},
        }


def fix_verdict(checks: Sequence[Check], summary: Mapping[str, Any]) -> str:
    failed = [check.name for check in checks if not check.ok]
    if not failed:
        return "resolved"
    bad, skipped = summary.get("nonfinite_steps", 0), summary.get("suppressed_steps", 0)
    hidden = bad > 0 and skipped == bad          # every non-finite step was silently skipped
    return "masked" if failed == ["finite"] and hidden else "not_resolved"


def grade(incident: Prepared, named_cause: str | None, fixed: Prepared,
          before: RunResult | None = None, after_dir: Path | None = None,
          options: RunOptions = RunOptions()) -> Verdict:
    """Grade a diagnosis of `incident` (its cause is the hidden one) and the fixed re-run
    `fixed` (the same incident with the learner's fixes). `before` reuses the broken run."""
    scenario = incident.scenario
    if named_cause is not None:
        scenario.cause(named_cause)                       # unknown names fail loudly
    before = before or runs.execute(incident)
    after = runs.execute(fixed, after_dir, options)
    before_checks = scenario.criterion.judge(before.summary)
    after_checks = scenario.criterion.judge(after.summary)
    verdict = fix_verdict(after_checks, after.summary)
    correct = named_cause == incident.cause_id
    return Verdict(scenario.id, incident.seed, incident.cause_id, named_cause, correct,
                   fixed.fix_ids, dict(fixed.sets), verdict, correct and verdict == "resolved",
                   before_checks, after_checks, before, after)
