"""Printable handouts for a session in the room, and (only when asked) their answer key.

    write_handout("nan_loss", seed=0, fmt="html", answers=True)
    -> debugsim-handouts/nan_loss-seed0/handout.html          story, changes, log excerpt,
                                                              plots, questions
       debugsim-handouts/nan_loss-seed0/answer-key.html       the cause, its tell, the fixes,
                                                              the debrief (a separate file)

The incident is the public one for the seed (or `cause` injected into it), never a learner's.
The handout holds what a learner could see (the run's own plots and log); the answer key is
written only with `answers`, to its own file, so the handout can be printed and handed out.
HTML embeds its plots, so one file travels (and prints) on its own.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from . import app, incidents
from .files import write_atomic

HANDOUTS_DIR = Path("debugsim-handouts")
EXCERPT_LINES = 24
QUESTIONS = (
    "When did the run first go wrong, and which signal shows it first?",
    "Which of the changes since the last good run could explain it? Which can you rule out, "
    "and with what evidence?",
    "Name the root cause (one of the options below).",
    "Which fix removes the cause rather than the symptom? What would you expect the re-run "
    "to show?",
)


def write_handout(scenario_id: str, seed: int = 0, cause: str | None = None, fmt: str = "md",
                  answers: bool = False, out: Path | None = None) -> list[Path]:
    """Run the incident and write the handout (and the answer key with `answers`)."""
    if fmt not in ("md", "html"):
        raise app.UsageError(f"format '{fmt}': choose md or html")
    incident = (app.injected(scenario_id, seed, cause) if cause else
                app.incident(scenario_id, seed, key=incidents.PUBLIC_KEY))
    spec = incident.scenario
    name = f"{spec.id}-seed{seed}" + (f"-{cause}" if cause else "")
    out = Path(out) if out else HANDOUTS_DIR / name
    result = app.run(incident, out / "run")
    sections = handout_sections(incident, result, out)
    written = [_write(out / f"handout.{fmt}", f"{spec.title} — handout", sections, fmt, out)]
    if answers:
        written.append(_write(out / f"answer-key.{fmt}", f"{spec.title} — answer key",
                              key_sections(incident), fmt, out))
    return written


def excerpt(result) -> str:
    """The first thing a learner would read: the scenario's first probe with no arguments
    (the log table, the memory plan), cut to EXCERPT_LINES lines around the trouble."""
    from .probes import for_scenario, nonfinite_steps
    first = for_scenario(result.prepared.scenario)[0]
    bad = nonfinite_steps(result)
    args = [str(max(0, bad[0] - 4)), str(bad[0] + 6)] if bad and first.USAGE.count("START") \
        else []
    lines = first.run(result, args, Path(result.out_dir or ".") / "plots").splitlines()
    lines = [line for line in lines if not line.startswith("wrote ")]
    if len(lines) > EXCERPT_LINES:
        lines = [*lines[:EXCERPT_LINES - 1], f"... ({len(lines) - EXCERPT_LINES + 1} more lines)"]
    return "\n".join(lines)


def handout_sections(incident, result, out: Path) -> list[tuple[str, object]]:
    spec = incident.scenario
    log = excerpt(result)                      # a planner's chart is drawn by its probe
    plots = sorted((out / "run" / "plots").glob("*.png"))
    return [
        ("The incident", spec.story),
        ("What changed since the last good run", ("pre", "\n".join(app.changes(incident)))),
        ("How the run ended", ("pre", "\n".join(incident.engine.summary_lines(result)))),
        ("From the log", ("pre", log)),
        *([("Plots", ("images", [p.relative_to(out) for p in plots]))] if plots else []),
        ("Questions", ("ol", list(QUESTIONS))),
        ("The possible causes", ("ul", [c.title for c in spec.causes])),
        ("The possible fixes", ("ul", [f.title for f in spec.fixes])),
        ("Healthy means", spec.criterion.describe() + "."),
    ]


def key_sections(incident) -> list[tuple[str, object]]:
    spec = incident.scenario
    cause = spec.cause(incident.cause_id)
    fixes = {f.id: f for f in spec.fixes}
    resolved = [fixes[f].title + (f" (a workaround: {fixes[f].cost})" if fixes[f].cost else "")
                for f in spec.resolves.get(cause.id, ())]
    masked = [fixes[f].title for f in spec.masks.get(cause.id, ())]
    return [("The cause", f"{cause.title} (id: {cause.id})"),
            ("What happened", cause.explanation),
            ("The tell", cause.tell + "."),
            ("Fixes that resolve it", ("ul", resolved)),
            *([("Fixes that only hide it", ("ul", masked))] if masked else []),
            ("The interview question", spec.interview_question),
            ("Debrief", ("pre", spec.debrief))]


def _write(path: Path, title: str, sections, fmt: str, out: Path) -> Path:
    text = _html(title, sections, out) if fmt == "html" else _markdown(title, sections)
    write_atomic(path, text)
    return path


def _markdown(title: str, sections) -> str:
    lines = [f"# {title}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", ""]
        kind, value = body if isinstance(body, tuple) else ("p", body)
        if kind == "pre":
            lines += ["```", value, "```"]
        elif kind == "images":
            lines += [f"![{p.stem}]({p.as_posix()})" for p in value]
        elif kind in ("ol", "ul"):
            lines += [f"{i}. {item}" if kind == "ol" else f"- {item}"
                      for i, item in enumerate(value, 1)]
        else:
            lines.append(value)
        lines.append("")
    return "\n".join(lines)


STYLE = """body{font-family:Georgia,serif;max-width:52em;margin:2em auto;padding:0 1em;
line-height:1.45;color:#111}h1{font-size:1.6em;border-bottom:2px solid #333}
h2{font-size:1.2em;margin-top:1.6em}pre{background:#f4f4f4;padding:.6em;font-size:.8em;
overflow-x:auto;white-space:pre}img{max-width:100%;display:block;margin:.6em 0;
border:1px solid #ddd}ol li{margin-bottom:2.8em}
@media print{pre{white-space:pre-wrap}h2{break-after:avoid}img{break-inside:avoid}}"""


def _html(title: str, sections, out: Path) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        kind, value = body if isinstance(body, tuple) else ("p", body)
        if kind == "pre":
            parts.append(f"<pre>{html.escape(value)}</pre>")
        elif kind == "images":
            for rel in value:
                data = base64.b64encode((out / rel).read_bytes()).decode()
                parts.append(f"<img alt='{html.escape(rel.stem)}' "
                             f"src='data:image/png;base64,{data}'>")
        elif kind in ("ol", "ul"):
            items = "".join(f"<li>{html.escape(item)}</li>" for item in value)
            parts.append(f"<{kind}>{items}</{kind}>")
        else:
            parts += [f"<p>{html.escape(par)}</p>" for par in value.split("\n\n")]
    parts.append("</body></html>\n")
    return "\n".join(parts)
