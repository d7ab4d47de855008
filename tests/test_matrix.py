"""The verdict matrix: every scenario × cause × fix × seed gets its declared verdict by re-run."""
import os

import pytest

from debugsim.sim import app, registry
from debugsim.sim.selfcheck import check_many, combinations

SEEDS = (0, 1, 2)
JOBS = min(os.cpu_count() or 1, 4)


def compute_matrix() -> dict[str, list]:
    """Every scenario's findings, the (scenario, seed) units spread over the CPUs."""
    found: dict[str, list] = {}
    for scenario, findings in check_many(registry.all_scenarios(), SEEDS, jobs=JOBS):
        found.setdefault(scenario.id, []).extend(findings)
    return found


@pytest.fixture(scope="module")
def matrix():
    """The findings, computed beside the rest of the suite when it runs whole (conftest.py)."""
    from conftest import matrix_findings
    return matrix_findings(compute_matrix)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", registry.all_scenarios(), ids=lambda s: s.id)
def test_every_declared_verdict_holds_on_rerun(scenario, matrix):
    findings = matrix[scenario.id]
    mismatches = [f.line() for f in findings if not f.ok]
    assert not mismatches, "\n".join(mismatches)
    # the matrix really covered every cause, every fix and every combination on every seed
    per_seed = 1 + sum(1 + len(combinations(scenario, c.id)) for c in scenario.causes)
    per_seed += len(scenario.causes) ** 2           # each tell on every cause's broken run
    assert len(findings) == len(SEEDS) * per_seed
    assert all(len(combinations(scenario, c.id)) > len(scenario.fixes) for c in scenario.causes)


@pytest.mark.parametrize("scenario", registry.all_scenarios(), ids=lambda s: s.id)
def test_every_cause_declares_a_tell_as_data(scenario):
    assert all(cause.signal is not None for cause in scenario.causes)


@pytest.mark.parametrize("scenario", registry.all_scenarios(), ids=lambda s: s.id)
def test_every_cause_has_a_fix_and_a_distractor(scenario):
    for cause in scenario.causes:
        resolving = scenario.resolves.get(cause.id, ())
        assert resolving, f"{cause.id} has no resolving fix"
        assert len(resolving) < len(scenario.fixes), f"{cause.id}: every fix resolves it"


def test_causes_are_drawn_evenly_enough():
    drawn = [app.incident("nan_loss", seed).cause_id for seed in range(60)]
    counts = {c.id: drawn.count(c.id) for c in registry.get("nan_loss").causes}
    assert min(counts.values()) >= 8, counts
