"""`debugsim dev check`: prove the catalogue's declarations by re-running them.

For every scenario and seed: the healthy base passes its criterion; every cause fails it;
every (cause, fix) pair gets, from a real re-run, exactly the verdict the scenario declares
(resolved, masked, or not_resolved for distractors). Runs go through the in-process cache, so
a fix that leaves a cause's run unchanged costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from . import engines, runs
from .grader import fix_verdict
from .scenario import Scenario

DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Finding:
    scenario: str
    seed: int
    cause: str | None
    fix: str | None
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got

    def line(self) -> str:
        what = f"{self.scenario} seed={self.seed} cause={self.cause or '(healthy)'}" \
               f" fix={self.fix or '(none)'}"
        return f"[{'ok' if self.ok else 'MISMATCH'}] {what}: expected {self.expected}, got {self.got}"


def verdict_of(scenario: Scenario, seed: int, cause: str | None, fix: str | None) -> str:
    prepared = engines.get(scenario.engine).prepare(scenario, seed, cause, [fix] if fix else [])
    result = runs.execute(prepared)
    verdict = fix_verdict(scenario.criterion.judge(result.summary), result.summary)
    if fix is None:
        return "healthy" if verdict == "resolved" else "broken"
    return verdict


def check_scenario(scenario: Scenario, seeds: Iterable[int] = DEFAULT_SEEDS):
    """Yields one Finding per re-run, as it completes."""
    for seed in seeds:
        yield Finding(scenario.id, seed, None, None, "healthy", verdict_of(scenario, seed, None, None))
        for cause in scenario.causes:
            got = verdict_of(scenario, seed, cause.id, None)
            yield Finding(scenario.id, seed, cause.id, None, "broken", got)
            for fix in scenario.fixes:
                expected = scenario.expected_verdict(cause.id, fix.id)
                yield Finding(scenario.id, seed, cause.id, fix.id, expected,
                              verdict_of(scenario, seed, cause.id, fix.id))
