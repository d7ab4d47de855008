"""`debugsim play`: story → live log → artifacts → probes → cause → fix → re-run verdict → debrief.

The conversation is injected (`say`, `ask`), so the same play runs in a terminal, under test,
or inside another tool. Every prompt can be answered up front instead (probe lines, cause,
fixes, settings). Input ends politely: at EOF the probe loop ends, and a missing answer is a
usage error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from . import app
from .engines.base import Prepared
from .session import parse_cause_answer, parse_fix_answer, run_probe

Say = Callable[[str], None]
Ask = Callable[[str], "str | None"]          # None: the input ended


def play(incident: Prepared, out: Path, say: Say, ask: Ask, probe_lines: Sequence[str] = (),
         cause_answer: str | None = None, fix_ids: Sequence[str] = (), settings=None):
    """Play one incident to its verdict; returns the Verdict."""
    from .report import verdict_lines
    scenario, engine = incident.scenario, incident.engine
    sets = app.parse_settings(scenario, settings)
    say(f"=== {scenario.title} ({scenario.id}, seed {incident.seed}) ===\n")
    say(scenario.story + "\n")
    say(engine.working)
    before = app.run(incident, out, live=True)
    say("\n".join(engine.summary_lines(before)))
    say(f"\nArtifacts: {out}/  ({', '.join(sorted(p.name for p in out.iterdir()))})\n")

    # --- investigate ---
    plot_dir = out / "plots"
    if probe_lines:
        for line in probe_lines:
            say(f"probe> {line}\n{run_probe(line, before, plot_dir)}")
    elif cause_answer is None:
        say("Investigate with probes; 'help' lists them, an empty line moves on.")
        while True:
            line = ask("probe>")
            if line is None or line.strip().lower() in ("", "done", "q", "quit"):
                break
            say(run_probe(line, before, plot_dir))

    # --- diagnose ---
    with app.user_errors():
        if cause_answer is None:
            say("\nWhat is the root cause?")
            for index, option in enumerate(scenario.causes, 1):
                say(f"  [{index}] {option.title}")
            cause_answer = _required(ask("cause (number or id)>"))
        named = parse_cause_answer(cause_answer, scenario)

        # --- fix ---
        if not fix_ids and not sets:
            say("\nWhich fix? Pick letters/ids, and/or settings such as lr=1e-3 grad_clip=1")
            for index, option in enumerate(scenario.fixes):
                say(f"  [{chr(ord('a') + index)}] {option.title}")
            fix_ids, sets = parse_fix_answer(_required(ask("fix>")), scenario, engine)
        if not fix_ids and not sets:
            raise LookupError("no fix chosen")

    say("\n" + engine.rerunning)
    verdict = app.grade(incident, named, fix_ids, sets, before=before,
                        after_dir=out / "rerun", live=True)
    evidence = engine.evidence_plot(before, verdict.after, plot_dir)
    say("\n".join(verdict_lines(verdict)))
    for line in engine.verdict_notes(verdict):
        say(line)
    say(f"Evidence: {evidence}\n")
    cause = scenario.cause(incident.cause_id)
    say(f"Debrief — {scenario.interview_question}\n")
    say(cause.explanation)
    say(f"The tell: {cause.tell}.\n")
    say(scenario.debrief)
    return verdict


def _required(answer: str | None) -> str:
    if answer is None:
        raise LookupError("no answer given (input ended)")
    return answer
