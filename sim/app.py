"""The app layer: what the CLI, a notebook, a quiz or a class grader calls.

    from debugsim.sim import app
    incident = app.incident("nan_loss", seed=3)          # drawn from the seed and your key
    app.simulate("nan_loss", 3, cause="lr_too_high", fixes=["fix_scheduler"]).series("loss")
    result = app.run(incident, "debugsim-runs/demo")    # artifacts, plots, summary.md
    verdict = app.check("nan_loss", 3, "lr_too_high", fixes=["fix_scheduler"])
    verdict.passed, verdict.fix_verdict

Every user mistake (an unknown name, a bad value, a combination that cannot run) raises
`UsageError` with a one-line message; a run that fails (NaN, out of memory) is a result.
"""
from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import engines, home, incidents, registry, run_store, runs
from .config import ConfigError
from .engines.base import Prepared, RunOptions
from .painter import Painter
from .result import RunResult
from .scenario import Scenario

RUNS_DIR = Path("debugsim-runs")


class UsageError(ValueError):
    """A user mistake: one line, no traceback (the CLI exits with code 2)."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the engine's and the catalogue's one-line errors into UsageError."""
    try:
        yield
    except (ConfigError, LookupError, home.HomeError) as error:
        raise UsageError(error.args[0] if error.args else str(error)) from None


def scenario(scenario_id: str | Scenario) -> Scenario:
    if isinstance(scenario_id, Scenario):
        return scenario_id
    with user_errors():
        return registry.get(scenario_id)


def scenarios(ids: Sequence[str] = ()) -> list[Scenario]:
    """The named scenarios, or the whole catalogue when none is named."""
    return [scenario(i) for i in ids] if ids else registry.all_scenarios()


def engine_of(scenario_or_id) -> engines.Engine:
    return engines.get(scenario(scenario_or_id).engine)


def parse_settings(scenario_or_id, settings: Sequence[str] | Mapping[str, Any] | None) -> dict:
    """`key=value` strings (or a dict, passed through) as the scenario's engine reads them."""
    if settings is None or isinstance(settings, Mapping):
        return dict(settings or {})
    with user_errors():
        return engine_of(scenario_or_id).parse_settings(list(settings))


MIN_SEED, MAX_SEED = 0, 2**32 - 1          # what torch.manual_seed and numpy accept


def check_seed(seed) -> int:
    """The seed, or UsageError when it is not a whole number in MIN_SEED..MAX_SEED."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not MIN_SEED <= seed <= MAX_SEED:
        raise UsageError(f"seed {seed!r}: must be a whole number from {MIN_SEED} to {MAX_SEED}")
    return seed


def pick_seed(seed: int | None) -> int:
    return check_seed(seed) if seed is not None else secrets.randbelow(10_000)


def _build(incident: incidents.Incident, fixes: Sequence[str], settings) -> Prepared:
    spec = incident.scenario
    sets = parse_settings(spec, settings)
    with user_errors():
        fix_ids = [spec.fix(fix).id for fix in fixes]
        return engine_of(spec).prepare(incident, fix_ids, sets)


def prepare(scenario_or_id, seed: int, cause: str | None = None, fixes: Sequence[str] = (),
            settings=None) -> Prepared:
    """`cause` (None: the healthy base) injected into the scenario's base as it is, with fixes
    and settings: no decoys, the seed seeds the training (notebooks, tests, the catalogue)."""
    spec = scenario(scenario_or_id)
    with user_errors():
        cause = spec.cause(cause).id if cause is not None else None
    return _build(incidents.bare(spec, check_seed(seed), cause), fixes, settings)


def incident(scenario_or_id, seed: int, fixes: Sequence[str] = (), settings=None,
             key: str | None = None) -> Prepared:
    """The incident a learner gets for this seed: drawn from the seed and their key (the home's
    key unless `key` is given, e.g. a class key). The hidden cause is drawn here, and only here."""
    spec = scenario(scenario_or_id)
    with user_errors():
        key = key or home.user_key()
    return _build(incidents.draw(spec, check_seed(seed), key), fixes, settings)


def injected(scenario_or_id, seed: int, cause: str, fixes: Sequence[str] = (), settings=None,
             key: str | None = None) -> Prepared:
    """`cause` injected into an incident of this seed (instructors). Without a key it is a
    fresh incident from the public key, never a learner's."""
    spec = scenario(scenario_or_id)
    with user_errors():
        cause = spec.cause(cause).id
    drawn = incidents.draw(spec, check_seed(seed), key or incidents.PUBLIC_KEY, cause)
    return _build(drawn, fixes, settings)


def to_run(scenario_or_id, seed: int | None, cause: str | None = None,
           fixes: Sequence[str] = (), settings=None) -> Prepared:
    """What `debugsim run` runs: the seed's incident (a random seed if None), or with `cause`
    that cause injected into a fresh incident (instructors)."""
    seed = pick_seed(seed)
    if cause:
        return injected(scenario_or_id, seed, cause, fixes, settings)
    return incident(scenario_or_id, seed, fixes, settings)


def with_fixes(prepared: Prepared, fixes: Sequence[str] = (), settings=None) -> Prepared:
    """The same incident with the learner's fixes and settings, checked against the scenario's
    envelope and for fixes that contradict each other (all before any run)."""
    spec = prepared.scenario
    sets = parse_settings(spec, settings)
    with user_errors():
        fix_ids = [spec.fix(fix).id for fix in fixes]
        for key in sets:
            spec.check_setting(key)
        conflict = spec.conflict(fix_ids)
        if conflict:
            raise UsageError(conflict)
        return prepared.with_fixes(fix_ids, sets)


def matrix_keys(text: str) -> list[str | None]:
    """'k1,bare,k2' -> ['k1', None, 'k2'] (None: the base without decoys)."""
    return [None if k.strip() == "bare" else k.strip() for k in text.split(",") if k.strip()]


def validate_answer(incident: Prepared, cause: str | None, fixes: Sequence[str] = (),
                    settings=None) -> None:
    """UsageError now, before the broken run, if an answer given up front cannot be graded."""
    with user_errors():
        if cause is not None:
            incident.scenario.cause(cause)
    if fixes or settings:
        with_fixes(incident, fixes, settings)


def changes(prepared: Prepared) -> list[str]:
    """'What changed since the last good run': the settings that differ from last week's
    healthy run, and the change log (the real change beside the decoys)."""
    incident = prepared.incident
    if not incident.changes_shown:
        return []
    engine = prepared.engine
    before = engine.settings_of(engine.prepare(incidents.bare(incident.scenario,
                                                              incident.train_seed)))
    now = engine.settings_of(engine.prepare(incident))
    lines = ["Changes since the last good run:", "  settings:"]
    lines += [f"    {key}: {before.get(key)!s} -> {value!s}" for key, value in sorted(now.items())
              if key != "seed" and before.get(key) != value] or ["    (none)"]
    lines += ["  change log:", *(f"    - {line}" for line in incident.change_log())]
    return lines


def default_out(prepared: Prepared) -> Path:
    """debugsim-runs/ID-seedN, plus the fixes, so a fixed run keeps its own folder."""
    suffix = "".join(f"-{fix}" for fix in prepared.fix_ids) + ("-set" if prepared.sets else "")
    return RUNS_DIR / f"{prepared.scenario.id}-seed{prepared.seed}{suffix}"


def execute(prepared: Prepared, out: Path | None = None, live: bool = False,
            track_memory: bool | None = None) -> RunResult:
    """Run without plots (cached in-process when nothing is written)."""
    return runs.execute(prepared, Path(out) if out else None, RunOptions(live, track_memory))


def simulate(scenario_or_id, seed: int, cause: str | None = None, fixes: Sequence[str] = (),
             settings=None, out: Path | None = None, track_memory: bool | None = None
             ) -> RunResult:
    """Prepare and execute in one call (notebooks, tests); `cause=None` is the healthy base."""
    return execute(prepare(scenario_or_id, seed, cause, fixes, settings), out,
                   track_memory=track_memory)


SNAPSHOT_FILE = "memory_snapshot.pickle"


def run(prepared: Prepared, out: Path | None = None, live: bool = False,
        track_memory: bool | None = None, plots: bool = True, memory_snapshot: bool = False,
        tensorboard: Path | None = None) -> RunResult:
    """Run and write every artifact: metrics, config, summary, summary.md, changes.md and
    (unless `plots` is False) the plots; with `memory_snapshot`, the simulated device's
    allocation history for PyTorch's memory visualiser (memory_snapshot.pickle); with
    `tensorboard`, TensorBoard event files in that folder (the optional extra, checked first)."""
    out = Path(out) if out else default_out(prepared)
    if tensorboard:
        _optional_extra()
    painter = Painter(prepared, out) if plots else None   # may get matplotlib ready meanwhile
    try:
        with _recording(memory_snapshot) as history:
            result = execute(prepared, out, live, True if memory_snapshot else track_memory)
        if history is not None:
            from .memory_snapshot import write
            if history.snapshot is None:
                raise UsageError(f"{prepared.scenario.id} does not train on the simulated "
                                 "device, so there is no allocation history to snapshot")
            write(history.snapshot, out / SNAPSHOT_FILE)
    except BaseException:
        if painter:
            painter.cancel()
        raise
    if track_memory is None and not memory_snapshot:
        run_store.save(result)                 # a later check of this incident reuses it
    drawn = painter.draw(result) if painter else ()
    _write_report(result, out, drawn)
    if tensorboard:
        from .tensorboard import write_run
        write_run(result, tensorboard, drawn)
    return result


def _optional_extra() -> None:
    """UsageError (one line, naming the extra) when TensorBoard's writer is not installed."""
    from .tensorboard import MissingExtra, require
    try:
        require()
    except MissingExtra as error:
        raise UsageError(str(error)) from None


@contextlib.contextmanager
def _recording(memory_snapshot: bool):
    if not memory_snapshot:
        yield None
        return
    from .device import record_memory_history
    from .memory_snapshot import MemoryHistory
    with record_memory_history(MemoryHistory()) as history:
        yield history


def run_drawing_later(prepared: Prepared, out: Path | None = None, live: bool = False,
                      track_memory: bool | None = None) -> tuple[RunResult, Callable[[], None]]:
    """Run and write the files now; draw the plots in a background thread (while a learner
    reads the first screen). Returns the result and `finish`, which waits for the drawing and
    rewrites summary.md with the plots: call it before anything reads them, and before the
    command returns (a run's artifacts are complete when it ends)."""
    import threading
    out = Path(out) if out else default_out(prepared)
    result = execute(prepared, out, live, track_memory)
    if track_memory is None:
        run_store.save(result)
    _write_report(result, out, ())
    (out / "plots").mkdir(parents=True, exist_ok=True)
    drawn: list = []
    failed: list = []
    finished: list = []

    def draw() -> None:
        try:
            drawn.extend(prepared.engine.write_plots(result, out))
        except BaseException as error:                  # re-raised by finish(), in the caller
            failed.append(error)

    worker = threading.Thread(target=draw, name="debugsim-plots", daemon=True)
    worker.start()

    def finish() -> None:
        if finished:
            return
        worker.join()
        finished.append(True)
        if failed:
            raise failed[0]
        _write_report(result, out, drawn)

    return result, finish


def _write_report(result: RunResult, out: Path, plots) -> None:
    from .report import write_summary_md
    from .files import write_atomic
    if result.prepared.incident.changes_shown:
        write_atomic(out / "changes.md", "\n".join(changes(result.prepared)) + "\n")
    write_summary_md(result, out / "summary.md", plots)


def grade(incident: Prepared, named_cause: str | None, fixes: Sequence[str] = (),
          settings=None, before: RunResult | None = None, after_dir: Path | None = None,
          live: bool = False):
    """Grade a diagnosis of `incident` by re-running it with the fixes."""
    from .grader import grade as grade_rerun
    fixed = with_fixes(incident, fixes, settings)
    with user_errors():
        if named_cause is not None:
            named_cause = incident.scenario.cause(named_cause).id
    return grade_rerun(incident, named_cause, fixed, before, after_dir, RunOptions(live=live))


def check(scenario_or_id, seed: int, named_cause: str, fixes: Sequence[str] = (),
          settings=None, key: str | None = None):
    """Grade an answer for the seed's incident (validated before anything runs); the attempt
    is recorded in the debugsim home."""
    broken = incident(scenario_or_id, seed, key=key)
    verdict = grade(broken, named_cause, fixes, settings, before=run_store.load(broken))
    run_store.save(verdict.before)
    record_attempt(verdict)
    return verdict


def record_attempt(verdict, attempt=None):
    """Score the attempt (its probes, the incident's hints so far) and record it in the
    debugsim home; returns the Score."""
    from .hints import taken
    from .score import score
    probes_used = list(attempt.probes) if attempt else []
    with user_errors():
        hints_taken = taken(verdict.scenario_id, verdict.seed)
        scored = score(verdict, len(probes_used), hints_taken)
        home.record_event("attempt", scenario=verdict.scenario_id, seed=verdict.seed,
                          cause=verdict.before.cause_id, named_cause=verdict.named_cause,
                          cause_correct=verdict.cause_correct, fix_verdict=verdict.fix_verdict,
                          passed=verdict.passed, probes=probes_used, hints=hints_taken,
                          score=scored.points,
                          seconds=round(attempt.elapsed(), 1) if attempt else None)
    return scored


def hint(incident_or_id, seed: int | None = None, key: str | None = None) -> tuple[int, str]:
    """The next staged hint for an incident (recorded; it costs score)."""
    from . import hints
    prepared = incident_or_id if isinstance(incident_or_id, Prepared) else \
        incident(incident_or_id, check_seed(seed), key=key)
    with user_errors():
        return hints.next_hint(prepared)


def progress(scenario_id: str | None = None) -> list:
    """The learner's progress rows (per scenario and known cause)."""
    from . import progress as learner_progress
    if scenario_id is not None:
        scenario_id = scenario(scenario_id).id
    with user_errors():
        return learner_progress.rows(scenario_id)


def reset(scenario_id: str | None = None) -> int:
    """Forget the learner's record (of one scenario); returns how many events were dropped."""
    if scenario_id is not None:
        scenario_id = scenario(scenario_id).id
    with user_errors():
        return home.forget_events(scenario_id)


def next_to_play(seed: int | None = None) -> tuple[str, int]:
    """The next unsolved scenario, and the seed to play: `seed` if given, else an unfinished
    incident's, else a new one."""
    from . import progress as learner_progress
    with user_errors():
        scenario_id, unfinished = learner_progress.next_unsolved()
    return scenario_id, pick_seed(seed if seed is not None else unfinished)


def random_scenario(tags: str | None = None) -> str:
    """A scenario drawn at random (with one of these comma-separated tags)."""
    wanted = {t.strip() for t in (tags or "").split(",") if t.strip()}
    pool = [s for s in scenarios() if not wanted or wanted & set(s.tags)]
    if not pool:
        known = sorted({t for s in scenarios() for t in s.tags})
        raise UsageError(f"no scenario has the tags {', '.join(sorted(wanted))}; "
                         f"tags: {', '.join(known)}")
    return secrets.choice(pool).id


def attempt(timed: str | None = None):
    """A fresh attempt, with a time limit ('15m', '90s') for the drill."""
    from .attempt import Attempt, parse_duration
    with user_errors():
        return Attempt(limit_s=parse_duration(timed) if timed else None)


def solved_causes() -> dict[str, set[str]]:
    from . import progress as learner_progress
    with user_errors():
        return learner_progress.solved_causes()


def reveal(scenario_or_id, seed: int, key: str | None = None) -> dict:
    """The seed's hidden cause, with its explanation and tell: an explicit act, recorded, so
    that progress and quizzes count it as seen, not solved."""
    prepared = incident(scenario_or_id, seed, key=key)
    spec, cause = prepared.scenario, prepared.scenario.cause(prepared.cause_id)
    with user_errors():
        home.record_event("reveal", scenario=spec.id, seed=seed, cause=cause.id)
    return {"scenario": spec.id, "seed": seed, "cause": cause.id, "title": cause.title,
            "explanation": cause.explanation, "tell": cause.tell,
            "resolved_by": list(spec.resolves.get(cause.id, ())),
            "interview_question": spec.interview_question, "debrief": spec.debrief}


def doctor(path: Path, floor: float | None = None):
    """Diagnose a training log (debugsim, Hugging Face, CSV, TensorBoard) from the log alone;
    UsageError for a path or format the doctor cannot read."""
    from . import doctor as log_doctor
    try:
        return log_doctor.diagnose(path, floor)
    except (log_doctor.DoctorError, OSError) as error:
        raise UsageError(str(error).splitlines()[0]) from None


QUIZ_DIR = Path("debugsim-quiz")


@contextlib.contextmanager
def quiz_errors() -> Iterator[None]:
    from .quiz import QuizError
    try:
        with user_errors():
            yield
    except QuizError as error:
        raise UsageError(str(error)) from None


def quiz(count: int, tags: str | None, difficulty: str | None, seed: int | None,
         out: Path | None, say, ask, results: Path | None = None) -> tuple[dict, Path]:
    """A quiz simulated now and taken at once (interactive or piped); returns the results
    and the results file."""
    import random
    from . import quiz as quizzes
    seed = pick_seed(seed)
    out = Path(out or QUIZ_DIR / f"seed-{seed}")
    with quiz_errors():
        picks = quizzes.pick(count, tags, difficulty, seed)
        say(f"Quiz of {count} question(s), seed {seed}. Simulating the incidents first:")
        drawn = [incident(s, n, key=quizzes.quiz_key(seed)) for s, n in picks]
        questions, _ = quizzes.simulate(drawn, out, say, random.Random(seed), changes)
        taken = quizzes.take(questions, say, ask)
    return taken, quizzes.write_results(taken, results or out / "results.json")


def make_quiz_pack(count: int, tags: str | None, difficulty: str | None, seed: int | None,
                   out: Path, fmt: str = "md", key_out: Path | None = None, say=print
                   ) -> list[Path]:
    """Simulate a quiz now and write it as a pack to take later (`take_quiz_pack`). The
    incidents' key is random and stays out of the pack (it goes to `key_out`)."""
    import random
    import tempfile
    from . import quiz as quizzes, quizpack
    out = Path(out)
    if (out / "pack.json").exists():
        raise UsageError(f"{out} already holds a quiz pack; choose another --out")
    if fmt not in ("md", "html"):
        raise UsageError(f"unknown format '{fmt}'; choose md or html")
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as scratch, quiz_errors():
        picks = quizzes.pick(count, tags, difficulty, pick_seed(seed))
        drawn = [incident(s, n, key=key) for s, n in picks]
        questions, answers = quizzes.simulate(drawn, Path(scratch), say, random.SystemRandom(),
                                              changes)
        return quizpack.make(questions, answers, out, fmt, key, key_out)


def take_quiz_pack(folder: Path, say, ask, results: Path | None = None) -> tuple[dict, Path]:
    """Take a pack offline: no training, the chosen options unseal their feedback."""
    from . import quiz as quizzes, quizpack
    folder = Path(folder)
    with quiz_errors():
        questions = quizpack.load(folder)
        taken = quizzes.take(questions, say, ask)
    default = folder.resolve().parent / f"{folder.resolve().name}-results.json"
    return taken, quizzes.write_results(taken, results or default)
