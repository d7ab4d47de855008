"""debugsim — a training-failure debugging simulator. The click front end: parse, call sim, print.

Exit codes: 0 ok, 1 a check that did not pass, 2 a usage error (bad name or value).
torch and matplotlib are imported inside commands, so `--help` and `list` start instantly.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click

from .sim import registry
from .sim.config import ConfigError

RUNS_DIR = Path("debugsim-runs")


class InputError(click.ClickException):
    """A user mistake: one line on stderr, exit code 2, no traceback."""
    exit_code = 2


def scenario_or_fail(scenario_id: str):
    try:
        return registry.get(scenario_id)
    except registry.UnknownScenario as error:
        raise InputError(str(error)) from None


def settings_or_fail(scenario, pairs) -> dict:
    from .sim.runner import parse_settings
    try:
        return parse_settings(scenario, pairs)
    except ConfigError as error:
        raise InputError(str(error)) from None


def check_names(scenario, cause: str | None, fixes) -> None:
    try:
        if cause:
            scenario.cause(cause)
        for fix in fixes:
            scenario.fix(fix)
    except LookupError as error:
        raise InputError(error.args[0]) from None


def validate_config(scenario, seed, cause, fixes, sets) -> None:
    from .sim.runner import validate
    try:
        validate(scenario, seed, cause, fixes, sets)
    except ConfigError as error:
        raise InputError(str(error)) from None


def pick_seed(seed: int | None) -> int:
    return seed if seed is not None else secrets.randbelow(10_000)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """debugsim: debug real (tiny) training failures, then prove your fix by re-running.

    Start with `debugsim list`, then `debugsim play nan_loss`.
    """


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(as_json: bool) -> None:
    """List the scenarios."""
    scenarios = registry.all_scenarios()
    if as_json:
        emit_json([{"id": s.id, "title": s.title, "difficulty": s.difficulty,
                    "tags": list(s.tags), "causes": len(s.causes)} for s in scenarios])
        return
    click.echo(f"{'id':<22} {'difficulty':<10} {'causes':>6}  title")
    for s in scenarios:
        click.echo(f"{s.id:<22} {s.difficulty:<10} {len(s.causes):>6}  {s.title}")


@cli.command("show")
@click.argument("scenario_id")
@click.option("--answers", is_flag=True, help="Also show the causes and the fixes for each.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_command(scenario_id: str, answers: bool, as_json: bool) -> None:
    """Show a scenario's story (and, with --answers, its causes and fixes)."""
    s = scenario_or_fail(scenario_id)
    data = {"id": s.id, "title": s.title, "difficulty": s.difficulty, "tags": list(s.tags),
            "story": s.story, "interview_question": s.interview_question,
            "healthy_means": s.criterion.describe(),
            "fixes": [{"id": f.id, "title": f.title} for f in s.fixes]}
    if answers:
        data["causes"] = [{"id": c.id, "title": c.title, "fault": c.fault.summary,
                           "tell": c.tell, "resolved_by": list(s.resolves.get(c.id, ())),
                           "masked_by": list(s.masks.get(c.id, ()))} for c in s.causes]
    if as_json:
        emit_json(data)
        return
    click.echo(f"{s.id} — {s.title}  [{s.difficulty}; {', '.join(s.tags)}]\n")
    click.echo(s.story + "\n")
    click.echo(f"Healthy means: {data['healthy_means']}")
    click.echo("Fixes on offer: " + ", ".join(f.id for f in s.fixes))
    if answers:
        click.echo("\nCauses:")
        for c in data["causes"]:
            click.echo(f"  {c['id']}: {c['title']}\n    fault: {c['fault']}\n    tell: {c['tell']}"
                       f"\n    resolved by: {', '.join(c['resolved_by']) or '-'}"
                       + (f"\n    masked by: {', '.join(c['masked_by'])}" if c["masked_by"] else ""))


def _run_and_save(scenario, seed, cause, fixes, sets, out_dir: Path, quiet: bool):
    """Train with a live table, then write plots and summary.md; returns the RunResult."""
    from .sim.report import write_summary_md
    from .sim.runner import assemble, execute
    if scenario.engine == "planner":             # no training: the plan and its chart
        result = execute(scenario, seed, cause, fixes, sets, out_dir=out_dir)
        write_summary_md(result, scenario, out_dir / "summary.md", ["memory_plan.png"])
        return result
    from .sim.console import LiveTable
    from .sim.plots import write_run_plots
    config, _ = assemble(scenario, seed, cause, fixes, sets)
    listeners = [] if quiet else [LiveTable(config.steps)]
    result = execute(scenario, seed, cause, fixes, sets, out_dir=out_dir, listeners=listeners)
    plots = write_run_plots(result, out_dir)
    write_summary_md(result, scenario, out_dir / "summary.md", plots)
    return result


@cli.command("run")
@click.argument("scenario_id")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (default: random, printed).")
@click.option("--cause", help="Inject this cause instead of the seed's draw (instructors).")
@click.option("--fix", "fixes", multiple=True, help="Apply a named fix (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Artifacts folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, no table.")
def run_command(scenario_id, seed, cause, fixes, sets, out, as_json) -> None:
    """Run a scenario non-interactively and write its artifacts."""
    scenario = scenario_or_fail(scenario_id)
    seed = pick_seed(seed)
    settings = settings_or_fail(scenario, sets)
    check_names(scenario, cause, fixes)
    cause = cause or scenario.draw_cause(seed).id
    validate_config(scenario, seed, cause, fixes, settings)
    suffix = "".join(f"-{fix}" for fix in fixes) + ("-set" if settings else "")
    out = out or RUNS_DIR / f"{scenario.id}-seed{seed}{suffix}"     # a fixed run keeps its own folder
    if not as_json:
        click.echo(f"{scenario.id}: seed {seed} -> {out}/")
    try:
        result = _run_and_save(scenario, seed, cause, list(fixes), settings, out, as_json)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: partial metrics in {out}/metrics.jsonl", err=True)
        sys.exit(130)
    if as_json:
        emit_json({"scenario": scenario.id, "seed": seed, "out": str(out),
                   "summary": result.summary})
        return
    from .sim.report import run_lines
    click.echo("\n".join(run_lines(result)))
    click.echo(f"artifacts: {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")


@cli.command("check")
@click.argument("scenario_id")
@click.option("--seed", type=click.IntRange(min=0), required=True)
@click.option("--cause", required=True, help="The cause you name.")
@click.option("--fix", "fixes", multiple=True, help="A named fix (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Free-form setting.")
@click.option("--json", "as_json", is_flag=True)
def check_command(scenario_id, seed, cause, fixes, sets, as_json) -> None:
    """Grade a diagnosis by re-running: exit 0 passed, 1 not passed, 2 usage error."""
    scenario = scenario_or_fail(scenario_id)
    settings = settings_or_fail(scenario, sets)
    check_names(scenario, cause, fixes)
    if not fixes and not settings:
        raise InputError("name a fix with --fix or a setting with --set")
    validate_config(scenario, seed, scenario.draw_cause(seed).id, fixes, settings)
    from .sim.grader import grade
    verdict = grade(scenario, seed, cause, list(fixes), settings)
    if as_json:
        emit_json(verdict.to_dict())
    else:
        from .sim.report import verdict_lines
        click.echo("\n".join(verdict_lines(verdict, scenario)))
    sys.exit(0 if verdict.passed else 1)


@cli.command("play")
@click.argument("scenario_id")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (default: random, printed).")
@click.option("--probe", "probe_lines", multiple=True, help="Run these probes, no prompt.")
@click.option("--cause", help="Your answer for the cause (skips the prompt).")
@click.option("--fix", "fixes", multiple=True, help="Your fix (skips the prompt).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Free-form setting.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Artifacts folder.")
def play_command(scenario_id, seed, probe_lines, cause, fixes, sets, out) -> None:
    """Play a scenario: read the story, investigate, name the cause, fix it, see the re-run."""
    from .sim.play import play
    scenario = scenario_or_fail(scenario_id)
    settings = settings_or_fail(scenario, sets)
    check_names(scenario, cause, fixes)
    seed = pick_seed(seed)
    out = out or RUNS_DIR / f"{scenario.id}-seed{seed}"
    try:
        passed = play(scenario, seed, out, probe_lines, cause, list(fixes), settings,
                      run_and_save=_run_and_save)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: partial output in {out}/", err=True)
        sys.exit(130)
    except (LookupError, ConfigError) as error:
        raise InputError(error.args[0]) from None
    sys.exit(0 if passed else 1)


@cli.group("dev")
def dev_group() -> None:
    """Tools for scenario authors."""


@dev_group.command("check")
@click.argument("scenario_ids", nargs=-1)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
def dev_check_command(scenario_ids, seeds) -> None:
    """Prove every declared verdict by re-running: causes break, fixes pass, distractors fail."""
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds {seeds!r}: expected comma-separated integers") from None
    scenarios = ([scenario_or_fail(i) for i in scenario_ids] if scenario_ids
                 else registry.all_scenarios())
    from .sim.selfcheck import check_scenario
    mismatches = total = 0
    for scenario in scenarios:
        for finding in check_scenario(scenario, seed_list):
            total += 1
            if not finding.ok:
                mismatches += 1
                click.echo(finding.line())
        click.echo(f"{scenario.id}: checked")
    click.echo(f"{total - mismatches} passed, {mismatches} failed")
    sys.exit(1 if mismatches else 0)


def _register_memory() -> None:
    from .sim.memplan.command import memory_command
    cli.add_command(memory_command)


_register_memory()


# click >= 8.2 signals "no arguments, show help" with its own UsageError subclass
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main() -> None:
    """Entry point: click's own usage errors are shortened to one line, like ours."""
    try:
        cli.main(prog_name="debugsim", standalone_mode=False)
    except _NO_ARGS_IS_HELP as error:                     # plain `debugsim`: show the help
        click.echo(error.ctx.get_help())
    except click.UsageError as error:
        named = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in cli.commands else None
        where = error.ctx.command_path if error.ctx else " ".join(filter(None, ["debugsim", named]))
        click.echo(f"Error: {error.format_message()} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except BrokenPipeError:                   # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
