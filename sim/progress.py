"""A learner's progress, derived from the events in the debugsim home's record.

Per scenario and cause: incidents met, attempts, probes used, hints taken, reveals, whether it
was solved, the best score and the time spent. A cause is only named once the learner knows it
(solved, revealed, or told by the third hint); until then its incidents are counted together
under "(not known yet)", so the progress table never gives a hidden cause away.

A reveal never counts as solved: an incident solved after its cause was revealed is not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import home, incidents, registry
from .hints import STAGES

UNKNOWN = "(not known yet)"


@dataclass
class Row:
    scenario: str
    cause: str | None                      # None: not known to the learner yet
    incidents: int = 0
    attempts: int = 0
    probes: list[str] = field(default_factory=list)     # distinct probe names used
    hints: int = 0
    reveals: int = 0
    solved: int = 0                        # incidents solved
    best_score: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _fill_causes(events: list[dict]) -> None:
    """Format-1 events name no cause: draw it again from the learner's key."""
    key = None
    for event in events:
        if event.get("cause") is None and "seed" in event:
            try:
                spec = registry.get(event["scenario"])
                key = key or home.user_key()
                event["cause"] = incidents.draw(spec, event["seed"], key).cause_id
            except LookupError:
                pass


def incidents_seen(events: list[dict] | None = None) -> dict[tuple[str, int], dict]:
    """(scenario, seed) -> what happened: cause, known, solved, revealed, attempts, ..."""
    events = home.load_record()["events"] if events is None else events
    _fill_causes(events)
    seen: dict[tuple[str, int], dict] = {}
    for event in sorted(events, key=lambda e: e.get("time", 0)):
        if "scenario" not in event or "seed" not in event:
            continue
        state = seen.setdefault((event["scenario"], event["seed"]), {
            "cause": event.get("cause"), "attempts": 0, "probes": set(), "hints": 0,
            "revealed": False, "solved": False, "best_score": None, "seconds": 0.0})
        state["cause"] = state["cause"] or event.get("cause")
        kind = event["kind"]
        if kind == "attempt":
            state["attempts"] += 1
            state["probes"] |= {line.split()[0] for line in event.get("probes", []) if line}
            state["seconds"] += event.get("seconds") or 0.0
            if event.get("score") is not None:
                state["best_score"] = max(state["best_score"] or 0, event["score"])
            if event.get("passed") and not state["revealed"]:
                state["solved"] = True
        elif kind == "reveal":
            state["revealed"] = True
        elif kind == "hint":
            state["hints"] = min(STAGES, state["hints"] + 1)
    for state in seen.values():
        state["known"] = state["solved"] or state["revealed"] or state["hints"] >= STAGES
    return seen


def rows(scenario: str | None = None) -> list[Row]:
    """Progress per scenario and (known) cause, in catalogue order."""
    order = {s.id: i for i, s in enumerate(registry.all_scenarios())}
    table: dict[tuple[str, str | None], Row] = {}
    for (scenario_id, _seed), state in incidents_seen().items():
        if scenario is not None and scenario_id != scenario:
            continue
        cause = state["cause"] if state["known"] else None
        row = table.setdefault((scenario_id, cause), Row(scenario_id, cause))
        row.incidents += 1
        row.attempts += state["attempts"]
        row.probes = sorted(set(row.probes) | state["probes"])
        row.hints += state["hints"]
        row.reveals += state["revealed"]
        row.solved += state["solved"]
        row.seconds += state["seconds"]
        if state["best_score"] is not None:
            row.best_score = max(row.best_score or 0, state["best_score"])
    return sorted(table.values(), key=lambda r: (order.get(r.scenario, len(order)), r.scenario,
                                                 r.cause is None, r.cause or ""))


def table_lines(found: list[Row]) -> list[str]:
    if not found:
        return ["No progress yet: start with `debugsim play` (it picks the next scenario)."]
    header = (f"{'scenario':<20} {'cause':<24} {'incidents':>9} {'attempts':>8} {'probes':>6} "
              f"{'hints':>5} {'reveals':>7} {'solved':>6} {'best':>4} {'time':>7}")
    lines = [header]
    for r in found:
        best = "-" if r.best_score is None else str(r.best_score)
        minutes = f"{int(r.seconds // 60)}:{int(r.seconds % 60):02d}"
        lines.append(f"{r.scenario:<20} {(r.cause or UNKNOWN):<24} {r.incidents:>9} "
                     f"{r.attempts:>8} {len(r.probes):>6} {r.hints:>5} {r.reveals:>7} "
                     f"{r.solved:>6} {best:>4} {minutes:>7}")
    return lines


def solved_causes() -> dict[str, set[str]]:
    """scenario -> the causes the learner has solved (for `list`)."""
    solved: dict[str, set[str]] = {}
    for (scenario_id, _seed), state in incidents_seen().items():
        if state["solved"] and state["cause"]:
            solved.setdefault(scenario_id, set()).add(state["cause"])
    return solved


def next_unsolved() -> tuple[str, int | None]:
    """The scenario to play next, and the seed of an unfinished incident of it (None: new).
    The first scenario in the catalogue with nothing solved; then the one with the most causes
    still to solve. LookupError when every cause of every scenario is solved."""
    seen = incidents_seen()
    solved = solved_causes()
    catalogue = registry.all_scenarios()
    untouched = [s for s in catalogue if not solved.get(s.id)]
    if untouched:
        spec = untouched[0]
    else:
        spec = max(catalogue, key=lambda s: len(s.causes) - len(solved[s.id]))
        if len(spec.causes) == len(solved[spec.id]):
            raise LookupError("every cause of every scenario is solved; name a scenario to "
                              "play it again, or `debugsim reset`")
    open_seeds = [seed for (sid, seed), state in seen.items()
                  if sid == spec.id and not state["solved"] and not state["known"]]
    return spec.id, (open_seeds[-1] if open_seeds else None)
