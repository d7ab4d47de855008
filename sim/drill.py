"""The interview drill: a timed attempt scored the way an interviewer would score it.

Rubric: the cause named, the fix resolves, the evidence cited (the probes that tell this cause
apart, from the cause's declared tell `signal.where`, were among the probes run), the time
against the limit, the hints taken. The learner's one-line justification is shown beside it.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from . import hints, probes
from .attempt import Attempt, clock

MARKS = {"pass": "[x]", "partial": "[~]", "fail": "[ ]"}


@dataclass(frozen=True)
class Item:
    name: str
    mark: str          # pass | partial | fail
    detail: str


def deciding_probes(cause) -> list[str]:
    """The probe lines (without step numbers) where this cause's tell shows, e.g.
    ['table', 'plot grad_norm'] from 'table (the lr column), plot grad_norm'."""
    where = re.sub(r"\([^)]*\)", "", cause.signal.where if cause.signal else "")
    found: list[str] = []
    for part in re.split(r",|\bthen\b", where):
        words = [w for w in part.split() if not w.isupper() and not w.isdigit()]
        if words and " ".join(words) not in found:
            found.append(" ".join(words))
    return found


def _used(deciding: str, lines: list[str], scenario) -> bool:
    name, *args = deciding.lower().split()
    probe = probes.find(name, scenario)
    for line in lines:
        words = line.lower().split()
        if words and probe is not None and probes.find(words[0], scenario) is probe \
                and all(arg in words[1:] for arg in args):
            return True
    return False


def rubric(incident, verdict, attempt: Attempt) -> list[Item]:
    scenario = incident.scenario
    cause = scenario.cause(incident.cause_id)
    named = scenario.cause(verdict.named_cause).title if verdict.named_cause else "nothing"
    items = [Item("cause named", "pass" if verdict.cause_correct else "fail",
                  f"you named: {named}")]
    fix_mark = {"resolved": "pass", "workaround": "partial"}.get(verdict.fix_verdict, "fail")
    fix_detail = f"re-run verdict: {verdict.fix_verdict.replace('_', ' ')}"
    if verdict.unneeded:
        fix_mark = "partial" if fix_mark == "pass" else fix_mark
        fix_detail += f"; unneeded: {', '.join(verdict.unneeded)}"
    items.append(Item("fix resolves", fix_mark, fix_detail))
    deciding = deciding_probes(cause)
    used = [d for d in deciding if _used(d, attempt.probes, scenario)]
    evidence_mark = ("pass" if deciding and len(used) == len(deciding)
                     else "partial" if used else "fail")
    ran = ", ".join(attempt.probes) or "no probes"
    items.append(Item("evidence cited", evidence_mark,
                      f"deciding probes used: {len(used)} of {len(deciding)}; you ran: {ran}"))
    elapsed, limit = attempt.elapsed(), attempt.limit_s
    in_time = limit is None or elapsed <= limit
    items.append(Item("time", "pass" if in_time else "fail",
                      f"{clock(elapsed)} of {clock(limit)}" if limit else clock(elapsed)))
    taken = hints.taken(scenario.id, incident.seed)
    items.append(Item("hints", "pass" if taken == 0 else "partial" if taken < hints.STAGES
                      else "fail", f"{taken} taken" + (" (the last one named the cause)"
                                                       if taken == hints.STAGES else "")))
    return items


def overall(items: list[Item]) -> str:
    marks = {item.name: item.mark for item in items}
    if marks["cause named"] == "pass" and marks["fix resolves"] == "pass":
        return "solved" if all(m == "pass" for m in marks.values()) else \
            "solved, with points off"
    if marks["cause named"] == "pass" or marks["fix resolves"] != "fail":
        return "half-solved"
    return "not solved"


def rubric_lines(incident, verdict, attempt: Attempt, justification: str) -> list[str]:
    """The rubric, the learner's justification beside it."""
    items = rubric(incident, verdict, attempt)
    left = [f"Drill rubric: {overall(items)}"]
    for item in items:
        left += textwrap.wrap(f"{MARKS[item.mark]} {item.name}: {item.detail}", 62,
                              subsequent_indent="    ")
    right = ["Your justification:", *textwrap.wrap(f'"{justification.strip()}"', 34)]
    width = max(len(line) for line in left) + 3
    rows = max(len(left), len(right))
    left += [""] * (rows - len(left))
    right += [""] * (rows - len(right))
    return [f"{a:<{width}}| {b}".rstrip() for a, b in zip(left, right)]
