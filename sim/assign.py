"""Assignments: one self-contained folder per learner and scenario, and playing one.

    DIR/assignments/LEARNER/SCENARIO/
        README.md     the story, what changed, what healthy means, how to work, the questions
        run/          the broken run as `debugsim run` writes it (log, metrics, plots)
        evidence/     what each probe shows for this incident, computed when it was assigned
        answer.json   the answer to fill in (cause, fixes, settings, justification)

A learner's variant is the incident drawn with their key (see `classroom`). The folder holds
neither the class key nor the learner's key, and nothing in it names the cause: the run folder
is what `debugsim run` writes, and the probes' evidence is what the probes print. Probes that
replay the run need the code that ran (the fault), which the folder cannot carry without
carrying the answer, so every probe's answers are computed here, on the instructor's side, for
a fixed set of probe lines (`probe_lines`). `play --assignment` serves those, logs which ones
the learner used, and writes the answer file; grading happens when the instructor grades.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from . import app, signals
from .classroom import Classroom
from .files import write_atomic, write_json

FORMAT_VERSION = 1
ANSWER = "answer.json"

Say = Callable[[str], None]
Ask = Callable[[str], "str | None"]


def folder_of(classroom: Classroom, learner: str, scenario_id: str) -> Path:
    return classroom.folder / "assignments" / learner / scenario_id


def learner_incident(classroom: Classroom, learner: str, scenario_id: str):
    """The learner's variant: drawn with their key from their derived seed."""
    return app.incident(scenario_id, classroom.seed(learner, scenario_id),
                        key=classroom.learner_key(learner))


def assign(classroom: Classroom, scenario_ids: Sequence[str], due: str | None = None,
           progress: Callable[[int, int], None] = lambda done, total: None) -> list[Path]:
    """Write every learner's assignment for each scenario; returns the folders written."""
    specs = app.scenarios(scenario_ids)
    if not scenario_ids:
        raise app.UsageError("name at least one scenario to assign")
    jobs = [(learner, spec.id) for learner in classroom.learners for spec in specs]
    written = []
    for done, (learner, scenario_id) in enumerate(jobs):
        progress(done, len(jobs))
        written.append(write_assignment(classroom, learner, scenario_id, due))
    progress(len(jobs), len(jobs))
    classroom.record_assignment([s.id for s in specs], due)
    return written


def write_assignment(classroom: Classroom, learner: str, scenario_id: str,
                     due: str | None) -> Path:
    incident = learner_incident(classroom, learner, scenario_id)
    out = folder_of(classroom, learner, scenario_id)
    if out.exists():
        shutil.rmtree(out)
    result = app.run(incident, out / "run")
    evidence = write_evidence(result, out / "evidence")
    spec, seed = incident.scenario, incident.seed
    write_atomic(out / "run" / "summary.txt",
                 "\n".join(incident.engine.summary_lines(result)) + "\n")
    write_json(out / ANSWER, blank_answer(classroom, learner, spec, seed, due))
    write_atomic(out / "README.md", readme(spec, incident, out, evidence, due))
    return out


def blank_answer(classroom: Classroom, learner: str, spec, seed: int, due) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "assignment": {"class": classroom.name, "learner": learner, "scenario": spec.id,
                       "seed": seed, "token": classroom.token(learner, spec.id, seed),
                       "due": due},
        "cause": None, "fixes": [], "settings": {}, "justification": "",
        "probes": [], "started": None, "submitted": None,
        "choices": {"causes": {c.id: c.title for c in spec.causes},
                    "fixes": {f.id: f.title for f in spec.fixes},
                    "settings you may change": list(spec.recipe)},
    }


# --------------------------------------------------------------------------------------------
# evidence: the probes' answers, computed where the code that ran is known
# --------------------------------------------------------------------------------------------

def probe_lines(result) -> list[str]:
    """The probe lines an assignment answers: every probe of the scenario, each with the
    arguments a learner most needs (the first step, the first non-finite one, the last one,
    every signal, the decoding settings that tell causes apart)."""
    from . import probes
    steps = [r["step"] for r in result.records]
    bad = probes.nonfinite_steps(result)
    picked = sorted({s for s in (steps[:1] + bad[:3] + steps[-1:]) if s is not None})
    lines = []
    for probe in probes.for_scenario(result.prepared.scenario):
        usage = probe.USAGE.split()
        if probe.NAME == "plot":
            lines += [f"plot {name}" for name in signals.names()]
        elif probe.NAME == "samples":
            lines += ["samples", "samples kv_cache=false", "samples decode=sample",
                      "samples decode=sample temperature=0.5"]
        elif len(usage) > 1 and usage[1] == "STEP":
            lines += [f"{probe.NAME} {step}" for step in picked]
        else:
            lines.append(probe.NAME)
    return lines


def write_evidence(result, folder: Path) -> dict[str, str]:
    """Run every probe line on the broken run; write evidence/probes.json (line -> text) and
    the probes' plots under evidence/. Paths in the text are relative to the assignment."""
    from .session import run_probe
    folder.mkdir(parents=True, exist_ok=True)
    root = str(folder.parent.resolve())
    answers = {}
    for line in probe_lines(result):
        text = run_probe(line, result, folder)
        answers[line] = text.replace(root + "/", "").replace(str(folder.parent) + "/", "")
    write_json(folder / "probes.json", {"format_version": FORMAT_VERSION, "probes": answers})
    return answers


# --------------------------------------------------------------------------------------------
# the README
# --------------------------------------------------------------------------------------------

def readme(spec, incident, out: Path, evidence: dict, due: str | None) -> str:
    files = sorted(p.relative_to(out).as_posix() for p in (out / "run").rglob("*")
                   if p.is_file())
    lines = [f"# {spec.title} — your assignment", ""]
    if due:
        lines += [f"Due: {due}", ""]
    lines += ["## The incident", "", spec.story, "", "```", *app.changes(incident), "```", "",
              "## What you have", "",
              "The broken run, as `debugsim run` writes it (start with `run/summary.md`):", "",
              *(f"- `{name}`" for name in files), "",
              "And `evidence/`: what each probe shows for this incident (`probes.json`, and "
              "the probes' plots).",
              "", "## How to work", "",
              "Investigate and answer interactively (the answer file is written for you):", "",
              "```", f"debugsim play --assignment {out.name}", "```", "",
              "(run it in the folder above this one, or give the full path). Or edit "
              f"`{ANSWER}` by hand: `cause` (one id of `choices.causes`), `fixes` (ids of "
              "`choices.fixes`), `settings` (e.g. {\"lr\": 0.001}, only those listed under "
              "`settings you may change`), and a one-line `justification`.", "",
              f"Healthy means: {spec.criterion.describe()}.", "",
              "## Questions", "",
              "1. When did the run first go wrong, and which signal shows it?",
              "2. What is the root cause? Which evidence rules the other causes out?",
              "3. Which fix (or setting) removes the cause, not only the symptom?",
              "4. In one line: why?", "",
              f"Probes answered in `evidence/`: {', '.join(sorted(evidence))}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# playing an assignment
# --------------------------------------------------------------------------------------------

def open_assignment(path: Path) -> tuple[Path, dict]:
    """The assignment folder and its answer file (path: the folder or its answer.json)."""
    path = Path(path)
    folder = path.parent if path.name == ANSWER else path
    answer_path = folder / ANSWER
    if not answer_path.exists():
        raise app.UsageError(f"{path} is not an assignment (no {ANSWER} in it)")
    try:
        answer = json.loads(answer_path.read_text())
        answer["assignment"]["scenario"]
    except (ValueError, KeyError, TypeError):
        raise app.UsageError(f"{answer_path} is not a valid answer file; ask your instructor "
                             "for a fresh copy") from None
    return folder, answer


def play_assignment(path: Path | None, say: Say, ask: Ask, scenario_id: str | None = None
                    ) -> Path:
    """Investigate an assignment with its evidence, answer, and write the answer file.
    Nothing is graded here: the instructor grades the class."""
    from .play import ask_cause, ask_fix_answer, investigate_with
    if path is None:
        raise app.UsageError("name a scenario to play (see `debugsim list`), or an assignment "
                             "with --assignment PATH")
    if scenario_id:
        raise app.UsageError("an assignment names its own scenario: give --assignment PATH "
                             f"without '{scenario_id}'")
    folder, answer = open_assignment(path)
    spec = app.scenario(answer["assignment"]["scenario"])
    evidence = json.loads((folder / "evidence" / "probes.json").read_text())["probes"]
    answer["started"] = answer.get("started") or round(time.time(), 3)
    _save(folder, answer)
    say(f"=== {spec.title} (assignment of {answer['assignment']['learner']}) ===\n")
    say(spec.story + "\n")
    say((folder / "run" / "changes.md").read_text())
    say((folder / "run" / "summary.txt").read_text())
    say(f"Files: {folder}/run/ (metrics.jsonl, plots/)\n")
    used = answer.setdefault("probes", [])

    def serve(line: str) -> str:
        key = " ".join(line.split())
        if key.lower() == "help":
            return "this assignment's probes:\n" + "\n".join(f"  {k}" for k in evidence)
        if key not in evidence:
            same = [k for k in evidence if k.split()[0] == key.split()[0]]
            return (f"'{key}' is not in this assignment's evidence; " +
                    (f"it holds: {', '.join(same)}" if same else
                     "'help' lists the probe lines it holds"))
        used.append(key)
        _save(folder, answer)
        return evidence[key]

    investigate_with(serve, say, ask)
    answer["cause"] = ask_cause(spec, say, ask)
    answer["fixes"], settings = ask_fix_answer(spec, say, ask)
    answer["settings"] = settings
    answer["justification"] = (ask("In one line, why?>") or "").strip()
    answer["submitted"] = round(time.time(), 3)
    _save(folder, answer)
    say(f"\nSaved your answer in {folder / ANSWER}. Hand it in as your instructor asked; "
        "it is graded by re-running your fix.")
    return folder / ANSWER


def _save(folder: Path, answer: dict) -> None:
    write_json(folder / ANSWER, answer)
