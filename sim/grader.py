"""The grader: check the named cause, then re-run the incident with the fix.

The verdict on a fix comes only from re-runs judged by the scenario's criterion:
- resolved      every check passes;
- workaround    every check passes, but only thanks to a change with a named cost (the cache
                turned off, many more steps, ...): the symptom is gone, the problem is not;
- masked        the only failing check is "finite", and every non-finite step was silently
                skipped: the run looks healthy but the fault still fires;
- not_resolved  anything else.
A set of changes larger than needed is graded on its merits: each change the run passes
without (found by re-running without it) is reported as unneeded, and the answer does not pass.
The grader never says which cause it was: revealing is a separate, recorded act.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .engines.base import Prepared, RunOptions
from .result import RunResult
from .scenario import Check


@dataclass
class Verdict:
    scenario_id: str
    seed: int
    named_cause: str | None
    cause_correct: bool
    fix_ids: tuple[str, ...]
    sets: dict
    fix_verdict: str                 # resolved | workaround | masked | not_resolved
    passed: bool
    before_checks: list[Check]
    after_checks: list[Check]
    before: RunResult
    after: RunResult
    costs: list[str] = field(default_factory=list)      # why it is a workaround
    unneeded: list[str] = field(default_factory=list)   # changes the run passes without

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario_id, "seed": self.seed, "passed": self.passed,
            "cause_correct": self.cause_correct, "named_cause": self.named_cause,
            "fixes": list(self.fix_ids), "sets": self.sets, "fix_verdict": self.fix_verdict,
            "costs": self.costs, "unneeded": self.unneeded,
            "before": {"summary": self.before.summary,
                       "checks": [asdict(c) for c in self.before_checks]},
            "after": {"summary": self.after.summary,
                      "checks": [asdict(c) for c in self.after_checks]},
        }


def judge(result: RunResult) -> str:
    """resolved | masked | not_resolved, from one run's checks (costs are judged apart)."""
    checks = result.prepared.scenario.criterion.judge(result.summary)
    failed = [check.name for check in checks if not check.ok]
    if not failed:
        return "resolved"
    summary = result.summary
    bad, skipped = summary.get("nonfinite_steps", 0), summary.get("suppressed_steps", 0)
    hidden = bad > 0 and skipped == bad          # every non-finite step was silently skipped
    return "masked" if failed == ["finite"] and hidden else "not_resolved"


def _changes(fixed: Prepared) -> list[tuple[str, Any]]:
    """The learner's changes, one by one: named fixes, then settings."""
    return [("fix", f) for f in fixed.fix_ids] + [("set", item) for item in fixed.sets.items()]


def _label(change) -> str:
    kind, value = change
    return value if kind == "fix" else f"{value[0]}={value[1]}"


def _rebuild(fixed: Prepared, kept) -> Prepared:
    return fixed.with_fixes([v for k, v in kept if k == "fix"],
                            dict(v for k, v in kept if k == "set"))


def _costs(fixed: Prepared) -> list[str]:
    """The named costs this run carries: a costly fix named, or its settings written out."""
    scenario, settings = fixed.scenario, fixed.engine.settings_of(fixed)
    before = fixed.engine.settings_of(fixed.with_fixes())
    costs = []
    for fix in scenario.fixes:
        if not fix.cost:
            continue
        named = fix.id in fixed.fix_ids
        written = fix.config and all(settings.get(k) == v != before.get(k)
                                     for k, v in fix.config.items())
        if named or written:
            costs.append(fix.cost)
    return costs


def grade(incident: Prepared, named_cause: str | None, fixed: Prepared,
          before: RunResult | None = None, after_dir: Path | None = None,
          options: RunOptions = RunOptions()) -> Verdict:
    """Grade a diagnosis of `incident` (its cause is the hidden one) and the fixed re-run
    `fixed` (the same incident with the learner's fixes). `before` reuses the broken run."""
    scenario = incident.scenario
    if named_cause is not None:
        scenario.cause(named_cause)                       # unknown names fail loudly
    if before is None:
        before, after = runs.execute_pair(incident, fixed, after_dir, options)
    else:
        after = runs.execute(fixed, after_dir, options)
    verdict, needed, unneeded = judge(after), fixed, []
    if verdict == "resolved":
        needed, unneeded = _minimal(fixed)
    costs = _costs(needed) if verdict == "resolved" else []
    if costs:
        verdict = "workaround"
    correct = named_cause == incident.cause_id
    return Verdict(scenario.id, incident.seed, named_cause, correct, fixed.fix_ids,
                   dict(fixed.sets), verdict, correct and verdict == "resolved" and not unneeded,
                   scenario.criterion.judge(before.summary),
                   scenario.criterion.judge(after.summary), before, after, costs, unneeded)


def _minimal(fixed: Prepared) -> tuple[Prepared, list[str]]:
    """The changes the run needs: one that passes on its own if there is one (one without a
    named cost first), else what is left after dropping, in order, each change the run still
    passes without. The rest are unneeded."""
    kept, unneeded = _changes(fixed), []
    if len(kept) < 2:
        return fixed, []
    alone = [_rebuild(fixed, [c]) for c in kept]
    passing = [(c, p) for c, p in zip(kept, alone) if judge(runs.execute(p)) == "resolved"]
    if passing:
        change, needed = min(passing, key=lambda item: bool(_costs(item[1])))
        return needed, [_label(c) for c in kept if c != change]
    for change in list(kept):
        trial = [c for c in kept if c != change]
        if trial and judge(runs.execute(_rebuild(fixed, trial))) == "resolved":
            kept, unneeded = trial, [*unneeded, _label(change)]
    return _rebuild(fixed, kept), unneeded
