"""Staged hints: first which probe to look at, then what to look for in it, then the cause.

The first two stages are each cause's own `hints`, declared beside it in its scenario module
(they never name the cause); the third names it. Every hint taken is recorded in the debugsim
home as a "hint" event for the incident, and costs score (`sim/score.py`).
"""
from __future__ import annotations

from . import home
from .engines.base import Prepared

STAGES = 3
COST = (5, 10, 25)            # points the 1st, 2nd and 3rd hint cost


def text(cause, stage: int) -> str:
    """What hint `stage` (1-3) says about `cause`."""
    if stage < STAGES and len(cause.hints) >= stage:
        return cause.hints[stage - 1]
    if stage < STAGES:                     # a scenario without hint text: the tell's place
        return ("Look here: " + cause.signal.where) if stage == 1 and cause.signal else \
            "Compare what you see with what each cause would leave behind."
    return f"The cause: {cause.title}. The tell: {cause.tell}."


def taken(scenario_id: str, seed: int) -> int:
    """How many hints the learner has taken for this incident."""
    return min(STAGES, len(home.events("hint", scenario=scenario_id, seed=seed)))


def cost(count: int) -> int:
    return sum(COST[:count])


def next_hint(incident: Prepared) -> tuple[int, str]:
    """The next hint for the incident (the last one again once all are taken), recorded."""
    scenario = incident.scenario
    stage = min(STAGES, taken(scenario.id, incident.seed) + 1)
    home.record_event("hint", scenario=scenario.id, seed=incident.seed,
                      cause=incident.cause_id, stage=stage)
    return stage, text(scenario.cause(incident.cause_id), stage)


def lines(stage: int, hint: str) -> list[str]:
    left = STAGES - stage
    return [f"Hint {stage} of {STAGES} (-{COST[stage - 1]} points): {hint}",
            f"({left} more hint{'s' if left != 1 else ''} available)" if left else
            "(that was the last hint)"]
