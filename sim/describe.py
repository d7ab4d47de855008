"""What `debugsim show` tells about a scenario: its story, and for instructors its answers."""
from __future__ import annotations

from .scenario import Scenario


def describe(s: Scenario, answers: bool = False) -> dict:
    data = {"id": s.id, "title": s.title, "difficulty": s.difficulty, "tags": list(s.tags),
            "story": s.story, "interview_question": s.interview_question,
            "healthy_means": s.criterion.describe(),
            "fixes": [{"id": f.id, "title": f.title} for f in s.fixes]}
    if answers:
        data["causes"] = [{"id": c.id, "title": c.title, "fault": c.fault.summary,
                           "tell": c.tell,
                           "resolved_by": [f for f in s.resolves.get(c.id, ()) if not s.fix(f).cost],
                           "workaround": [f for f in s.resolves.get(c.id, ()) if s.fix(f).cost],
                           "masked_by": list(s.masks.get(c.id, ()))} for c in s.causes]
    return data


def describe_lines(data: dict) -> list[str]:
    lines = [f"{data['id']} — {data['title']}  [{data['difficulty']}; {', '.join(data['tags'])}]\n",
             data["story"] + "\n",
             f"Healthy means: {data['healthy_means']}",
             "Fixes on offer: " + ", ".join(f["id"] for f in data["fixes"])]
    if "causes" in data:
        lines.append("\nCauses:")
        for c in data["causes"]:
            lines.append(f"  {c['id']}: {c['title']}\n    fault: {c['fault']}\n    tell: {c['tell']}"
                         f"\n    resolved by: {', '.join(c['resolved_by']) or '-'}"
                         + (f"\n    workaround (a fix with a cost): {', '.join(c['workaround'])}"
                            if c["workaround"] else "")
                         + (f"\n    masked by: {', '.join(c['masked_by'])}" if c["masked_by"] else ""))
    return lines
