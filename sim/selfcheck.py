"""`debugsim dev check`: prove the catalogue's declarations by re-running them.

For every scenario, seed and key: the healthy base passes its criterion; every cause fails it;
every (cause, fix) pair, every resolving fix combined with each other fix, and the shotgun of
all fixes at once get, from real re-runs, exactly the verdict the scenario declares. A combined
answer that resolves must also be found to carry its extra fixes as unneeded. Runs go through
the in-process cache, so a fix that leaves a cause's run unchanged costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from . import engines, incidents, runs
from .grader import grade, judge
from .scenario import Scenario

DEFAULT_SEEDS = (0, 1, 2)
MATRIX_KEY = "debugsim-matrix"     # real incidents (decoys, training seed) the tests check


@dataclass(frozen=True)
class Finding:
    scenario: str
    seed: int
    key: str | None
    cause: str | None
    fixes: tuple[str, ...]
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got

    def line(self) -> str:
        what = (f"{self.scenario} seed={self.seed} key={self.key or '(bare)'} "
                f"cause={self.cause or '(healthy)'} fix={'+'.join(self.fixes) or '(none)'}")
        return f"[{'ok' if self.ok else 'MISMATCH'}] {what}: expected {self.expected}, got {self.got}"


def combinations(scenario: Scenario, cause_id: str) -> list[tuple[str, ...]]:
    """Each fix alone, each resolving fix with each other fix, and the shotgun (every fix
    that does not contradict an earlier one)."""
    ids = [f.id for f in scenario.fixes]
    combos = [(f,) for f in ids]
    for resolving in scenario.resolves.get(cause_id, ()):
        combos += [(resolving, other) for other in ids
                   if other != resolving and not scenario.conflict((resolving, other))]
    shotgun: list[str] = []
    for fix_id in ids:
        if not scenario.conflict((*shotgun, fix_id)):
            shotgun.append(fix_id)
    combos.append(tuple(shotgun))
    return list(dict.fromkeys(combos))


def _incident(scenario: Scenario, seed: int, key: str | None, cause_id: str | None):
    if key is None:
        return incidents.bare(scenario, seed, cause_id)
    drawn = incidents.draw(scenario, seed, key, cause_id)
    return drawn if cause_id else drawn.healthy()


def check_scenario(scenario: Scenario, seeds: Iterable[int] = DEFAULT_SEEDS,
                   keys: Sequence[str | None] = (MATRIX_KEY,)):
    """Yields one Finding per declaration, as its re-runs complete."""
    engine = engines.get(scenario.engine)
    for key in keys:
        for seed in seeds:
            healthy = runs.execute(engine.prepare(_incident(scenario, seed, key, None)))
            yield Finding(scenario.id, seed, key, None, (), "healthy",
                          "healthy" if judge(healthy) == "resolved" else "broken")
            broken_runs = {}
            for cause in scenario.causes:
                broken = engine.prepare(_incident(scenario, seed, key, cause.id))
                before = broken_runs[cause.id] = runs.execute(broken)
                yield Finding(scenario.id, seed, key, cause.id, (), "broken",
                              "healthy" if judge(before) == "resolved" else "broken")
                for fixes in combinations(scenario, cause.id):
                    yield _finding(scenario, seed, key, cause.id, fixes, broken, before)
            yield from _tell_findings(scenario, seed, key, broken_runs)


def _tell_findings(scenario: Scenario, seed: int, key, broken_runs: dict):
    """Each cause's declared tell holds on its own broken run and on no other cause's."""
    for cause in scenario.causes:
        if cause.signal is None:
            continue
        for other, run in broken_runs.items():
            expected = "tell holds" if other == cause.id else "tell absent"
            got = "tell holds" if cause.signal.holds(run) else "tell absent"
            yield Finding(scenario.id, seed, key, other, (f"tell of {cause.id}",), expected, got)


def _finding(scenario, seed, key, cause_id, fixes, broken, before) -> Finding:
    expected = scenario.expected_verdict(cause_id, fixes)
    verdict = grade(broken, cause_id, broken.with_fixes(fixes), before)
    got = verdict.fix_verdict
    if got in ("resolved", "workaround") and len(verdict.unneeded) != len(fixes) - 1:
        got += f" (unneeded {verdict.unneeded or 'none'}, expected {len(fixes) - 1})"
    return Finding(scenario.id, seed, key, cause_id, tuple(fixes), expected, got)


def _check_unit(unit) -> list[Finding]:
    scenario_id, seed, keys = unit
    from . import registry
    return list(check_scenario(registry.get(scenario_id), (seed,), keys))


def _rough_cost(scenario: Scenario) -> float:
    """A rough guess at one seed's share of the matrix, to start the long units first."""
    base = scenario.base                          # a base without steps trains nothing
    work = base.get("steps", 0) * base.get("batch_size", 32) * base.get("grad_accum_steps", 1)
    tracked = 2.0 if base.get("memory_budget_mib") else 1.0
    from .config import DECODING_FIELDS          # decoding-only fixes share one training
    retrains = [f for f in scenario.fixes
                if set(f.config) - set(DECODING_FIELDS) or f.repairs or f.callbacks]
    return work * tracked * len(scenario.causes) * (1 + len(retrains))


def check_many(scenarios: Sequence[Scenario], seeds: Iterable[int] = DEFAULT_SEEDS,
               keys: Sequence[str | None] = (MATRIX_KEY,), jobs: int = 1):
    """Yields (scenario, findings of one seed) as each completes, spread over `jobs` processes
    (each (scenario, seed) is independent; runs are deterministic, so the split changes
    nothing but the wall time). Registered scenarios only when jobs > 1."""
    units = [(s.id, seed, tuple(keys)) for s in scenarios for seed in seeds]
    if jobs <= 1:
        for scenario in scenarios:
            for seed in seeds:
                yield scenario, list(check_scenario(scenario, (seed,), keys))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    by_id = {s.id: s for s in scenarios}
    units.sort(key=lambda unit: -_rough_cost(by_id[unit[0]]))   # the longest first: no idle tail
    context = multiprocessing.get_context("spawn")    # a fresh interpreter: no forked torch state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for unit, findings in zip(units, pool.map(_check_unit, units)):
            yield by_id[unit[0]], findings
