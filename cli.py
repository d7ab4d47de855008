"""debugsim — a training-failure debugging simulator. The click front end: parse, call sim, print.

Exit codes: 0 ok, 1 a check that did not pass, 2 a usage error (bad name or value).
torch and matplotlib are imported inside commands, so `--help` and `list` start instantly.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from .sim import app



class InputError(click.ClickException):
    """A user mistake: one line on stderr, exit code 2, no traceback."""
    exit_code = 2


@contextlib.contextmanager
def usage_errors():
    """The app layer's UsageError becomes a one-line error with exit code 2."""
    try:
        yield
    except app.UsageError as error:
        raise InputError(str(error)) from None


def emit_json(obj) -> None:
    """Strict JSON on stdout: non-finite floats as null (never a bare NaN)."""
    from .sim.files import json_text
    click.echo(json_text(obj, indent=2, default=str))


def ask(prompt: str) -> str | None:
    """One line from the user; None once the input has ended. Ctrl-C is not swallowed (as
    click.prompt would): play decides what it means at each prompt."""
    try:
        return input(f"{prompt} ")
    except EOFError:
        click.echo()
        return None


@contextlib.contextmanager
def on_interrupt(where: str):
    """Ctrl-C: say where the partial output is, exit 130 (the files are already valid)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: {where}", err=True)
        sys.exit(130)


# a seed seeds numpy-style generators and torch.manual_seed: 0 .. 2**32 - 1
SEED = click.IntRange(app.MIN_SEED, app.MAX_SEED)


class SeedList(click.ParamType):
    name = "seeds"

    def convert(self, value, param, ctx):
        try:
            seeds = [int(s) for s in str(value).split(",") if s.strip()]
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated integers", param, ctx)
        for seed in seeds:
            if not app.MIN_SEED <= seed <= app.MAX_SEED:
                self.fail(f"seed {seed} is not in the range {app.MIN_SEED}..{app.MAX_SEED}",
                          param, ctx)
        return seeds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", "home_dir", type=click.Path(file_okay=False), envvar="DEBUGSIM_HOME",
              help="The debugsim home: your key and progress (default ~/.debugsim).")
def cli(home_dir) -> None:
    """debugsim: debug real (tiny) training failures, then prove your fix by re-running.

    Start with `debugsim list`, then `debugsim play` (it picks the next unsolved scenario).
    """
    if home_dir:
        os.environ["DEBUGSIM_HOME"] = str(home_dir)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(as_json: bool) -> None:
    """List the scenarios."""
    from .sim import registry
    scenarios = registry.all_scenarios()
    with usage_errors():
        solved = {k: len(v) for k, v in app.solved_causes().items()}
    if as_json:
        return emit_json([{"id": s.id, "title": s.title, "difficulty": s.difficulty,
                           "tags": list(s.tags), "causes": len(s.causes),
                           "solved_causes": solved.get(s.id, 0)} for s in scenarios])
    click.echo(f"{'id':<22} {'difficulty':<10} {'causes':>6} {'solved':>6}  title")
    for s in scenarios:
        click.echo(f"{s.id:<22} {s.difficulty:<10} {len(s.causes):>6} "
                   f"{solved.get(s.id, 0):>4}/{len(s.causes)}  {s.title}")


@cli.command("show")
@click.argument("scenario_id")
@click.option("--answers", is_flag=True, help="Also show the causes and the fixes for each.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_command(scenario_id: str, answers: bool, as_json: bool) -> None:
    """Show a scenario's story (and, with --answers, its causes and fixes)."""
    from .sim.describe import describe, describe_lines
    with usage_errors():
        data = describe(app.scenario(scenario_id), answers)
    if as_json:
        return emit_json(data)
    click.echo("\n".join(describe_lines(data)))


@cli.command("run")
@click.argument("scenario_id")
@click.option("--seed", type=SEED, help="Seed (default: random, printed).")
@click.option("--cause", help="Inject this cause instead of the seed's draw (instructors).")
@click.option("--fix", "fixes", multiple=True, help="Apply a named fix (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Artifacts folder.")
@click.option("--track-memory", is_flag=True, help="Count memory on the simulated device.")
@click.option("--no-plots", is_flag=True, help="Write every file but the plots (faster).")
@click.option("--memory-snapshot", is_flag=True, help="Also write memory_snapshot.pickle: the "
              "allocation history for PyTorch's memory visualiser (pytorch.org/memory_viz).")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Also write TensorBoard event files there (pip install "
                   "'debugsim[tensorboard]').")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, no table.")
def run_command(scenario_id, seed, cause, fixes, sets, out, track_memory, no_plots,
                memory_snapshot, tensorboard, as_json) -> None:
    """Run a scenario non-interactively and write its artifacts."""
    with usage_errors():
        prepared = app.to_run(scenario_id, seed, cause, fixes, sets)
    out, seed = out or app.default_out(prepared), prepared.seed
    if not as_json:
        click.echo("\n".join([f"{prepared.scenario.id}: seed {seed} -> {out}/",
                              *app.changes(prepared)]))
    with on_interrupt(f"partial metrics in {out}/metrics.jsonl"), usage_errors():
        result = app.run(prepared, out, not as_json, track_memory or None, not no_plots,
                         memory_snapshot, tensorboard)
    if as_json:
        return emit_json({"scenario": prepared.scenario.id, "seed": seed, "out": str(out),
                          "summary": result.summary})
    click.echo("\n".join(prepared.engine.summary_lines(result)))
    click.echo(f"artifacts: {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})"
               + (f"\nTensorBoard: tensorboard --logdir {tensorboard}" if tensorboard else ""))


@cli.command("check")
@click.argument("scenario_id")
@click.option("--seed", type=SEED, required=True)
@click.option("--cause", required=True, help="The cause you name.")
@click.option("--fix", "fixes", multiple=True, help="A named fix (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Free-form setting.")
@click.option("--json", "as_json", is_flag=True)
def check_command(scenario_id, seed, cause, fixes, sets, as_json) -> None:
    """Grade a diagnosis by re-running: exit 0 passed, 1 not passed, 2 usage error."""
    from .sim.report import verdict_lines
    with usage_errors():
        if not fixes and not sets:
            app.prepare(scenario_id, seed, cause)            # unknown names come first
            raise app.UsageError("name a fix with --fix or a setting with --set")
        verdict = app.check(scenario_id, seed, cause, fixes, sets)
    if as_json:
        emit_json(verdict.to_dict())
    else:
        click.echo("\n".join(verdict_lines(verdict)))
    sys.exit(0 if verdict.passed else 1)


PLAY_OPTIONS = [
    click.option("--seed", type=SEED, help="Seed (default: random, printed)."),
    click.option("--probe", "probe_lines", multiple=True, help="Run these probes, no prompt."),
    click.option("--cause", help="Your answer for the cause (skips the prompt)."),
    click.option("--fix", "fixes", multiple=True, help="Your fix (skips the prompt)."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Free-form setting."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                 help="Artifacts folder.")]


def play_options(command):
    for option in reversed(PLAY_OPTIONS):
        command = option(command)
    return command


def play_and_exit(incident, out, timed, probe_lines, cause, fixes, sets,
                  present: bool = False) -> None:
    """Play an incident (validated answers first) and exit 0 if the answer passed, else 1."""
    from .sim.play import play
    app.validate_answer(incident, cause, fixes, sets)
    out = out or app.default_out(incident)
    with on_interrupt(f"partial output in {out}/"):
        verdict = play(incident, out, click.echo, ask, probe_lines, cause, fixes, sets,
                       app.attempt(timed), present)
    sys.exit(0 if verdict.passed else 1)


@cli.command("play")
@click.argument("scenario_id", required=False)
@play_options
@click.option("--timed", metavar="TIME", help="Interview drill: a time limit (15m, 90s) with "
              "a countdown, then a rubric.")
@click.option("--assignment", type=click.Path(path_type=Path),
              help="Work on a class assignment (its folder): writes its answer file.")
@click.option("--present", is_flag=True,
              help="Projector mode: large plot text, a pause before each reveal.")
def play_command(scenario_id, seed, probe_lines, cause, fixes, sets, out, timed, assignment,
                 present) -> None:
    """Play a scenario: read the story, investigate, name the cause, fix it, see the re-run.

    Without SCENARIO_ID, continue with the next unsolved scenario."""
    from .sim.assign import play_assignment
    with usage_errors():
        if assignment:
            return play_assignment(assignment, click.echo, ask, scenario_id)
        if scenario_id is None:
            scenario_id, seed = app.next_to_play(seed)
            click.echo(f"Next unsolved: {scenario_id}, seed {seed}")
        incident = app.incident(scenario_id, app.pick_seed(seed))
        play_and_exit(incident, out, timed, probe_lines, cause, fixes, sets, present)


@cli.command("drill")
@click.option("--timed", metavar="TIME", default="15m", show_default=True,
              help="The time limit (15m, 90s, 1h).")
@click.option("--tags", help="Only scenarios with one of these tags (comma-separated).")
@play_options
def drill_command(timed, tags, seed, probe_lines, cause, fixes, sets, out) -> None:
    """Interview drill on a random scenario: a countdown, then an interviewer's rubric."""
    with usage_errors():
        incident = app.incident(app.random_scenario(tags), app.pick_seed(seed))
        play_and_exit(incident, out, timed, probe_lines, cause, fixes, sets)


@cli.command("hint")
@click.argument("scenario_id")
@click.option("--seed", type=SEED, required=True)
def hint_command(scenario_id, seed) -> None:
    """The next staged hint for your incident: which probe, what to look for, the cause.
    Each hint is recorded and costs points."""
    from .sim.hints import lines
    with usage_errors():
        click.echo("\n".join(lines(*app.hint(scenario_id, seed))))


@cli.command("progress")
@click.argument("scenario_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def progress_command(scenario_id, as_json) -> None:
    """Your progress per scenario and cause: attempts, probes, hints, reveals, solved, score."""
    from .sim.progress import table_lines
    with usage_errors():
        found = app.progress(scenario_id)
    if as_json:
        return emit_json([row.to_dict() for row in found])
    click.echo("\n".join(table_lines(found)))


@cli.command("reset")
@click.argument("scenario_id", required=False)
@click.option("--yes", is_flag=True, help="Do not ask first.")
def reset_command(scenario_id, yes) -> None:
    """Forget your progress (of one scenario, or all of it)."""
    with usage_errors():
        what = app.scenario(scenario_id).id if scenario_id else "all scenarios"
        if not yes and not _yes(ask(f"Forget your progress on {what}? [y/N]")):
            return click.echo("Nothing changed.")
        click.echo(f"Forgot {app.reset(scenario_id)} recorded events ({what}).")


def _yes(answer: str | None) -> bool:
    return (answer or "").strip().lower() in ("y", "yes")


@cli.command("reveal")
@click.argument("scenario_id")
@click.option("--seed", type=click.IntRange(min=0), required=True)
@click.option("--json", "as_json", is_flag=True)
def reveal_command(scenario_id, seed, as_json) -> None:
    """Show your incident's hidden cause (recorded: it counts as seen, not solved)."""
    with usage_errors():
        shown = app.reveal(scenario_id, seed)
    if as_json:
        return emit_json(shown)
    click.echo(f"{shown['scenario']}, seed {seed}: {shown['title']} ({shown['cause']})\n")
    click.echo(f"{shown['explanation']}\nThe tell: {shown['tell']}.")
    click.echo(f"Resolved by: {', '.join(shown['resolved_by'])}\n\n{shown['debrief']}")


@cli.command("doctor")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--floor", type=float, help="The lowest loss this task can reach, if known "
              "(slow progress is then judged against it).")
@click.option("--json", "as_json", is_flag=True)
def doctor_command(path, floor, as_json) -> None:
    """Diagnose a training log: debugsim's metrics.jsonl, Hugging Face trainer_state.json, CSV
    with a header, TensorBoard event files (a file, or a folder holding one).

    Each finding says what it saw, where, how sure it is, likely causes, what to check next
    and which debugsim scenario trains it. Reads the log only."""
    from .sim.doctor import render
    with usage_errors():
        diagnosis = app.doctor(path, floor)
    if as_json:
        return emit_json(diagnosis.to_dict())
    click.echo("\n".join(render(diagnosis)))


QUIZ_RESULTS = click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
                            help="Where to write the results (JSON).")


@cli.group("quiz", invoke_without_command=True)
@click.option("--count", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--tags", help="Only scenarios with one of these tags (comma-separated).")
@click.option("--difficulty", help="Only these difficulties (easy, medium, hard; commas).")
@click.option("--seed", type=SEED, help="Seed of the draw (default: random, printed).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the plots and results (default debugsim-quiz/seed-N).")
@QUIZ_RESULTS
@click.pass_context
def quiz_group(ctx, count, tags, difficulty, seed, out, results) -> None:
    """A self-checking diagnosis quiz: incidents simulated now, multiple choice, explained.

    `quiz make` writes a pack to take later (offline, instant); `quiz take DIR` takes one."""
    if ctx.invoked_subcommand is not None:
        return
    from .sim.quiz import result_lines
    with usage_errors():
        taken, path = app.quiz(count, tags, difficulty, seed, out, click.echo, ask, results)
    click.echo("\n".join(result_lines(taken)) + f"\nResults: {path}")


@quiz_group.command("make")
@click.option("--count", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md",
              show_default=True)
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the answer key here (instructors; outside the pack).")
@click.option("--tags", help="Only scenarios with one of these tags (comma-separated).")
@click.option("--difficulty", help="Only these difficulties (easy, medium, hard; commas).")
@click.option("--seed", type=SEED, help="Seed of the draw of scenarios.")
def quiz_make_command(count, out, fmt, key_out, tags, difficulty, seed) -> None:
    """Make a quiz pack: incidents simulated now, answers sealed, taken later offline."""
    with usage_errors():
        written = app.make_quiz_pack(count, tags, difficulty, seed, out, fmt, key_out,
                                     click.echo)
    click.echo(f"Quiz pack: {out}/ ({len(written)} files); take it with "
               f"`debugsim quiz take {out}`" + (f"; answer key: {key_out}" if key_out else ""))


@quiz_group.command("take")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@QUIZ_RESULTS
def quiz_take_command(folder, results) -> None:
    """Take a quiz pack offline (your first answer to each part counts)."""
    from .sim.quiz import result_lines
    with usage_errors():
        taken, path = app.take_quiz_pack(folder, click.echo, ask, results)
    click.echo("\n".join(result_lines(taken)) + f"\nResults: {path}")


@cli.group("class")
def class_group() -> None:
    """Instructor-led exercises: a class folder with its own key and roster."""


@class_group.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The class's name.")
@click.option("--roster", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV of learner ids (column 'learner', or the first column).")
@click.option("--learners", type=click.IntRange(1, 10_000), help="Or: N numbered learners.")
def class_init_command(folder, name, roster, learners) -> None:
    """Make a class folder: a secret key (mode 600), the roster and the config."""
    from .sim import classroom
    with usage_errors():
        made = classroom.init(folder, name, learners, roster)
    click.echo(f"class '{made.name}': {len(made.learners)} learners in {folder}/ "
               f"(keep {folder}/key to yourself)\nnext: debugsim assign {folder} SCENARIO")


@cli.command("assign")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("scenario_ids", nargs=-1, required=True)
@click.option("--due", help="When it is due (written into each assignment), e.g. 2026-12-01.")
def assign_command(folder, scenario_ids, due) -> None:
    """Write each learner's own variant of each scenario as an assignment folder."""
    from .sim import assign, classroom
    with usage_errors():
        written = assign.assign(classroom.load(folder), scenario_ids, due, progress=_bar)
    click.echo(f"\n{len(written)} assignments in {folder}/assignments/LEARNER/SCENARIO/; "
               "hand each learner their folder (never the class folder)")


@cli.command("grade")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("submissions", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--jobs", type=click.IntRange(1, 64), help="Worker processes (default: CPUs).")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=120, show_default=True,
              help="Seconds per answer's re-runs.")
@click.option("--memory-cap", type=click.IntRange(min=256), default=4096, show_default=True,
              help="MB of address space per worker.")
def grade_command(folder, submissions, jobs, time_limit, memory_cap) -> None:
    """Grade a class's answer files (files or folders) by re-running every fix."""
    from .sim import classgrade, classroom
    with usage_errors():
        book = classgrade.grade(classroom.load(folder), submissions, jobs, time_limit,
                                memory_cap, progress=lambda *a: _bar(*a[:2], a[2]))
    click.echo("\n" + "\n".join(classgrade.summary_lines(book)))


@cli.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def report_command(folder) -> None:
    """A class report from the last grading: Markdown and a PNG chart."""
    from .sim import classreport, classroom
    with usage_errors():
        written = classreport.write_report(classroom.load(folder))
    click.echo(f"report: {written[0]} (chart: {written[1]})")


@cli.command("handout")
@click.argument("scenario_id")
@click.option("--cause", help="The cause to show (default: drawn from the seed).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md",
              show_default=True)
@click.option("--answers", is_flag=True, help="Also write the answer key (a separate file).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder.")
def handout_command(scenario_id, cause, seed, fmt, answers, out) -> None:
    """A printable handout (story, log excerpt, plots, questions); the key only with --answers."""
    from .sim import handout
    with usage_errors():
        written = handout.write_handout(scenario_id, seed, cause, fmt, answers, out)
    click.echo("\n".join(f"wrote {path}" for path in written))


def _bar(done: int, total: int, cached: int | None = None) -> None:
    """A progress bar on stderr (only where a person watches)."""
    if sys.stderr.isatty():
        from .sim.classgrade import progress_bar
        click.echo(progress_bar(done, total, cached), err=True, nl=False)


@cli.group("dev")
def dev_group() -> None:
    """Tools for scenario authors."""


@dev_group.command("check")
@click.argument("scenario_ids", nargs=-1)
@click.option("--seeds", type=SeedList(), default="0,1,2", show_default=True,
              help="Comma-separated seeds.")
@click.option("--keys", default="debugsim-matrix", show_default=True,
              help="Comma-separated incident keys ('bare': the base without decoys).")
@click.option("--jobs", type=click.IntRange(1, 64), default=os.cpu_count() or 1,
              show_default="the CPU count", help="Processes to spread the re-runs over.")
def dev_check_command(scenario_ids, seeds, keys, jobs) -> None:
    """Prove every declared verdict by re-running: causes break, fixes pass, distractors fail."""
    from .sim.selfcheck import check_many
    with usage_errors():
        scenarios = app.scenarios(scenario_ids)
    failed = total = 0
    for scenario, findings in check_many(scenarios, seeds, app.matrix_keys(keys), jobs):
        for finding in findings:
            total, failed = total + 1, failed + (not finding.ok)
            if not finding.ok:
                click.echo(finding.line())
        click.echo(f"{scenario.id}: seed {findings[0].seed} checked")
    click.echo(f"{total - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def _register_memory() -> None:
    from .sim.memplan.command import memory_command
    cli.add_command(memory_command)


_register_memory()


# click >= 8.2 signals "no arguments, show help" with its own UsageError subclass
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main() -> None:
    """Entry point: click's own usage errors are shortened to one line, like ours."""
    try:
        try:
            cli.main(prog_name="debugsim", standalone_mode=False)
        finally:                          # e.g. a corrupt record set aside: say so, once
            for notice in app.home.notices:
                click.echo(f"note: {notice}", err=True)
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
