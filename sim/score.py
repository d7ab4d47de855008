"""Scoring an attempt: full marks for the right cause and a resolving fix with few probes and
no hints; every lost point comes with its reason.

    cause named correctly    40
    fix                      40   resolved 40 · workaround 25 · masked 10 · not resolved 0
    focus                    20   unneeded changes -5 each, probes beyond 8 -2 each
    hints                         -5, -10, -25 for the 1st, 2nd and 3rd
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import hints

MAX = 100
CAUSE, FIX, FOCUS = 40, 40, 20
FIX_POINTS = {"resolved": 40, "workaround": 25, "masked": 10, "not_resolved": 0}
FREE_PROBES, PROBE_COST, UNNEEDED_COST = 8, 2, 5


@dataclass
class Score:
    points: int
    lost: list[tuple[int, str]] = field(default_factory=list)     # (points, why)

    def lines(self) -> list[str]:
        out = [f"Score: {self.points}/{MAX}"]
        out += [f"  -{points:<3} {why}" for points, why in self.lost]
        return out


def score(verdict, probes_used: int = 0, hints_taken: int = 0) -> Score:
    lost: list[tuple[int, str]] = []
    if not verdict.cause_correct:
        lost.append((CAUSE, f"the cause named ('{verdict.named_cause}') is not this "
                            "incident's cause"))
    fix_lost = FIX - FIX_POINTS[verdict.fix_verdict]
    if fix_lost:
        why = {"workaround": "the fix is a workaround: " + "; ".join(verdict.costs),
               "masked": "the fix hides the symptom (non-finite steps are skipped, the bug "
                         "stays)",
               "not_resolved": "the re-run with your fix does not meet the healthy bar"}
        lost.append((fix_lost, why[verdict.fix_verdict]))
    focus_lost = 0
    for change in verdict.unneeded:
        cost = min(UNNEEDED_COST, FOCUS - focus_lost)
        focus_lost += cost
        lost.append((cost, f"unneeded change '{change}' (the re-run passes without it)"))
    extra = max(0, probes_used - FREE_PROBES)
    if extra:
        taken = min(extra * PROBE_COST, FOCUS - focus_lost)
        if taken > 0:
            lost.append((taken, f"{probes_used} probes used, {FREE_PROBES} are free"))
    for stage in range(1, hints_taken + 1):
        lost.append((hints.COST[stage - 1], f"hint {stage} taken"))
    points = max(0, MAX - sum(points for points, _ in lost))
    return Score(points, lost)
