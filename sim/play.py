"""`debugsim play`: story → changes → live log → probes → cause → fix → re-run verdict → debrief.

The conversation is injected (`say`, `ask`), so the same play runs in a terminal, under test,
or inside another tool. Every prompt can be answered up front instead (probe lines, cause,
fixes, settings): then there is one attempt. Interactively, a typo asks again, Ctrl-C at the
probe prompt asks before quitting, and an answer that does not pass may be tried again (each
attempt is recorded). The debrief names the cause: after a pass, or when the learner stops
trying — then it is recorded as a reveal, seen but not solved.

`hint` at the probe prompt gives the next staged hint (recorded; it costs score). Each graded
attempt is scored (`sim/score.py`) with the reason for every lost point. A timed attempt (the
interview drill) shows the time left at every prompt and ends with the drill's rubric. In
projector mode (`present`) the plots have large text and each reveal waits, with a discussion
prompt, until the presenter presses Enter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from . import app, home
from .attempt import Attempt
from .engines.base import Prepared
from .session import is_probe, parse_cause_answer, parse_fix_answer, run_probe

Say = Callable[[str], None]
Ask = Callable[[str], "str | None"]          # None: the input ended; may raise KeyboardInterrupt


# Projector mode: what the room discusses before each reveal.
PROMPTS = {
    "investigate": "What would you check first, and why?",
    "rerun": "Before the re-run: what do you expect it to show if this is the cause?",
    "debrief": "What would you check next, and why? Which evidence would change your mind?",
}


def play(incident: Prepared, out: Path, say: Say, ask: Ask, probe_lines: Sequence[str] = (),
         cause_answer: str | None = None, fix_ids: Sequence[str] = (), settings=None,
         attempt: Attempt | None = None, present: bool = False):
    """Play one incident to its final verdict; returns it. `attempt` (e.g. with a time limit)
    collects the probes and the time; a timed one ends with the drill's rubric. `present`:
    projector mode, with large text in the plots and a pause with a discussion prompt before
    each reveal (the re-run's verdict, the debrief)."""
    from contextlib import nullcontext
    from .plots import large_text
    with large_text() if present else nullcontext():
        return _play(incident, out, say, ask, probe_lines, cause_answer, fix_ids, settings,
                     attempt or Attempt(), present)


def _play(incident, out, say, ask, probe_lines, cause_answer, fix_ids, settings, attempt,
          present):
    scenario, engine = incident.scenario, incident.engine
    sets = app.parse_settings(scenario, settings)
    interactive = cause_answer is None and not probe_lines
    plain_ask, ask = ask, _timed(ask, attempt)
    pause = _pause if present else (lambda *args: None)
    say(f"=== {scenario.title} ({scenario.id}, seed {incident.seed}) ===\n")
    say(scenario.story + "\n")
    say("\n".join(app.changes(incident)) + "\n")
    say(engine.working)
    before, finish_drawing = app.run_drawing_later(incident, out, live=True)
    say("\n".join(engine.summary_lines(before)))
    say(f"\nArtifacts: {out}/  ({', '.join(sorted(p.name for p in out.iterdir()))})\n")

    def probe(line: str) -> str:          # probes draw too: the plots come first
        finish_drawing()
        return _probe_or_hint(line, incident, before, out / "plots", attempt)

    try:
        for line in probe_lines:
            say(f"probe> {line}\n{probe(line)}")
        while True:
            if interactive:
                pause(say, ask, PROMPTS["investigate"], "start investigating")
                from .prompt import completion
                with completion(scenario, before):
                    investigate_with(probe, say, ask, attempt)
            named = cause_answer or ask_cause(scenario, say, ask)
            chosen = (list(fix_ids), sets) if (fix_ids or sets) else _ask_fix(incident, say, ask)
            pause(say, ask, PROMPTS["rerun"], "re-run with this fix")
            finish_drawing()
            verdict = _grade(incident, named, chosen, before, out, say, attempt)
            if verdict.passed or not interactive or not _yes(ask("Try again? [y/N]>")):
                break
    finally:
        finish_drawing()
    if attempt.limit_s is not None:
        from .drill import rubric_lines
        justification = _required(plain_ask("In one line, why is it this cause?>"))
        say("\n" + "\n".join(rubric_lines(incident, verdict, attempt, justification)) + "\n")
    pause(say, ask, PROMPTS["debrief"], "reveal the cause")
    _debrief(incident, verdict, say)
    return verdict


def _timed(ask: Ask, attempt: Attempt) -> Ask:
    """Prompts of a timed attempt start with the time left."""
    return (lambda prompt: ask(attempt.countdown() + prompt)) if attempt.limit_s else ask


def _pause(say: Say, ask: Ask, prompt: str, then: str) -> None:
    """Projector mode: a discussion prompt, then nothing more until Enter is pressed."""
    say(f"\n>>> Discuss: {prompt}")
    ask(f"[press Enter to {then}]")


def _probe_or_hint(line: str, incident: Prepared, before, plot_dir: Path,
                   attempt: Attempt) -> str:
    if line.strip().lower() == "hint":
        from .hints import lines
        return "\n".join(lines(*app.hint(incident)))
    if is_probe(line, incident.scenario):
        attempt.probes.append(" ".join(line.split()))
    return run_probe(line, before, plot_dir)


def investigate_with(serve: Callable[[str], str], say: Say, ask: Ask,
                     attempt: Attempt | None = None) -> None:
    """The probe prompt: each line is answered by `serve` until an empty line (or, in a timed
    attempt, until the time is up). With an attempt, 'hint' is on offer too."""
    offer = "'hint' gives a hint (it costs points), " if attempt else ""
    say(f"Investigate with probes; 'help' lists them, {offer}an empty line moves on.")
    while not (attempt and attempt.over_time()):
        try:
            line = ask("probe>")
        except KeyboardInterrupt:
            say("")
            if _yes(ask("Quit this incident? [y/N]>")):
                raise
            continue
        if line is None or line.strip().lower() in ("", "done", "q", "quit"):
            return
        say(serve(line))
    say("Time is up: name the cause and the fix now.")


def ask_cause(scenario, say: Say, ask: Ask) -> str:
    say("\nWhat is the root cause?")
    for index, option in enumerate(scenario.causes, 1):
        say(f"  [{index}] {option.title}")
    while True:
        answer = _required(ask("cause (number or id)>"))
        try:
            return parse_cause_answer(answer, scenario)
        except LookupError as error:
            say(f"  {error.args[0]}" if answer.strip() else "  (an answer, please)")


def _ask_fix(incident: Prepared, say: Say, ask: Ask):
    return ask_fix_answer(incident.scenario, say, ask,
                          lambda fixes, sets: app.with_fixes(incident, fixes, sets))


def ask_fix_answer(scenario, say: Say, ask: Ask, check=None) -> tuple[list[str], dict]:
    """Fixes and settings, asked again until usable: checked against the scenario's envelope
    and for fixes that contradict each other (`check`, else the scenario's own rules),
    without running anything."""
    from .engines import get
    say("\nWhich fix? Pick letters/ids, and/or settings such as lr=1e-3 grad_clip=1")
    for index, option in enumerate(scenario.fixes):
        say(f"  [{chr(ord('a') + index)}] {option.title}")
    while True:
        answer = _required(ask("fix>"))
        try:
            fixes, sets = parse_fix_answer(answer, scenario, get(scenario.engine))
            if fixes or sets:
                (check or _check_answer(scenario))(fixes, sets)
                return fixes, sets
        except (LookupError, ValueError) as error:
            say(f"  {error.args[0]}")
            continue
        say("  (a fix or a setting, please)")


def _check_answer(scenario):
    def check(fixes, sets) -> None:
        for key in sets:
            scenario.check_setting(key)
        conflict = scenario.conflict(fixes)
        if conflict:
            raise ValueError(conflict)
    return check


def _grade(incident: Prepared, named: str, chosen, before, out: Path, say: Say,
           attempt: Attempt):
    from .report import verdict_lines
    engine = incident.engine
    say("\n" + engine.rerunning)
    verdict = app.grade(incident, named, *chosen, before=before, after_dir=out / "rerun",
                        live=True)
    scored = app.record_attempt(verdict, attempt)
    evidence = engine.evidence_plot(before, verdict.after, out / "plots")
    say("\n".join(verdict_lines(verdict)))
    for line in engine.verdict_notes(verdict):
        say(line)
    say(f"Evidence: {evidence}")
    say("\n".join(scored.lines()) + "\n")
    return verdict


def _debrief(incident: Prepared, verdict, say: Say) -> None:
    scenario = incident.scenario
    if not verdict.passed:
        with app.user_errors():
            home.record_event("reveal", scenario=scenario.id, seed=incident.seed,
                              cause=incident.cause_id)
    cause = scenario.cause(incident.cause_id)
    say(f"Debrief — {scenario.interview_question}\n")
    say(f"The cause: {cause.title}.")
    say(cause.explanation)
    say(f"The tell: {cause.tell}.\n")
    say(scenario.debrief)


def _required(answer: str | None) -> str:
    if answer is None:
        raise app.UsageError("no answer given (input ended)")
    return answer


def _yes(answer: str | None) -> bool:
    return (answer or "").strip().lower() in ("y", "yes")
