"""`debugsim play`: story → live log → artifacts → probes → cause → fix → re-run verdict → debrief.

Every prompt can be answered by a flag instead, and answers can be piped in, one per line
(probes, then an empty line, then the cause, then the fix). Input ends politely: at EOF the
probe loop ends, and a missing answer is a usage error.
"""
from __future__ import annotations

from pathlib import Path

import click

from .scenario import Scenario


def _ask(prompt: str) -> str:
    try:
        return click.prompt(prompt, default="", show_default=False, prompt_suffix=" ")
    except click.Abort:
        click.echo()
        raise LookupError("no answer given (input ended)") from None


def play(scenario: Scenario, seed: int, out, probe_lines, cause_answer, fix_ids, sets,
         run_and_save) -> bool:
    from .grader import grade
    from .report import run_lines, verdict_lines
    from .session import parse_cause_answer, parse_fix_answer, run_probe

    click.echo(f"=== {scenario.title} ({scenario.id}, seed {seed}) ===\n")
    click.echo(scenario.story + "\n")
    cause = scenario.draw_cause(seed)
    planner = scenario.engine == "planner"
    click.echo("Computing the memory plan of the failing job ..." if planner
               else "Running the broken training ...")
    before = run_and_save(scenario, seed, cause.id, [], {}, out, False)
    click.echo("\n".join(run_lines(before)))
    click.echo(f"\nArtifacts: {out}/  ({', '.join(sorted(p.name for p in out.iterdir()))})\n")

    # --- investigate ---
    plot_dir = out / "plots"
    if probe_lines:
        for line in probe_lines:
            click.echo(f"probe> {line}\n{run_probe(line, before, scenario, plot_dir)}")
    elif cause_answer is None:
        click.echo("Investigate with probes; 'help' lists them, an empty line moves on.")
        while True:
            try:
                line = click.prompt("probe>", default="", show_default=False, prompt_suffix=" ")
            except click.Abort:
                click.echo()
                break
            if line.strip().lower() in ("", "done", "q", "quit"):
                break
            click.echo(run_probe(line, before, scenario, plot_dir))

    # --- diagnose ---
    if cause_answer is None:
        click.echo("\nWhat is the root cause?")
        for index, option in enumerate(scenario.causes, 1):
            click.echo(f"  [{index}] {option.title}")
        cause_answer = _ask("cause (number or id)>")
    named = parse_cause_answer(cause_answer, scenario)

    # --- fix ---
    if not fix_ids and not sets:
        click.echo("\nWhich fix? Pick letters/ids, and/or settings such as lr=1e-3 grad_clip=1")
        for index, option in enumerate(scenario.fixes):
            click.echo(f"  [{chr(ord('a') + index)}] {option.title}")
        fix_ids, sets = parse_fix_answer(_ask("fix>"), scenario)
    if not fix_ids and not sets:
        raise LookupError("no fix chosen")

    click.echo("\nRecomputing the plan with your fix ..." if planner
               else "\nRe-running the same seeded training with your fix ...")
    listeners = []
    if scenario.engine == "training":
        from .console import LiveTable
        from .runner import assemble
        listeners.append(LiveTable(assemble(scenario, seed, cause.id, fix_ids, sets)[0].steps))
    verdict = grade(scenario, seed, named, fix_ids, sets, cause_id=cause.id, before=before,
                    after_dir=out / "rerun", listeners=listeners)
    evidence = _save_evidence(before, verdict.after, out)
    click.echo("\n".join(verdict_lines(verdict, scenario)))
    if "plan" in verdict.after.summary:
        click.echo("Your plan: " + verdict.after.summary["why"])
    click.echo(f"Evidence: {evidence}\n")
    click.echo(f"Debrief — {scenario.interview_question}\n")
    click.echo(cause.explanation)
    click.echo(f"The tell: {cause.tell}.\n")
    click.echo(scenario.debrief)
    return verdict.passed


def _save_evidence(before, after, out) -> Path:
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if "plan" in after.summary:
        from .memplan.exercise import plot_before_after
        return plot_before_after(before, after, out / "plots" / "before_after_memory.png")
    from .plots import compare
    path = out / "plots" / "before_after_loss.png"
    compare(before, after, "loss", path)
    return path
