"""Grading a class: every answer file re-run under limits, in worker processes, cached.

    grade(classroom, paths) -> Gradebook

1. Collect answer files (files, or every `answer.json` and top-level `*.json` of a folder).
   Whose a file is comes from its path (a roster id as a folder or file name), else from the
   file itself. Each is checked before anything runs: valid JSON of the right shape, an
   assignment of this class whose token matches the learner it is handed in for (learner A's
   file handed in as B's, or edited to claim B's variant, is flagged), known cause and fix ids,
   settings inside the scenario's envelope. Of two files for one learner and question, the one
   submitted last counts; the other is reported as superseded.
2. Re-runs are keyed by (incident, fixes, settings) and the code's digest; identical answers
   run once, and a key graded before is read from DIR/grades/cache/ (the cause named does not
   change a re-run: it is judged apart).
3. The rest run in worker processes (spawned, one per core by default), each under a memory
   cap (RLIMIT_AS) and a time limit per answer (its broken run and its re-runs), counted in
   the CPU seconds the worker spends on it (so a busy machine does not fail a good answer;
   wall time where /proc is missing, and at most WALL_BACKSTOP times the limit in wall time):
   a worker past the limit is killed and replaced, a worker that dies is replaced, and the
   batch goes on.
4. The gradebook: grades.csv, grades.json (with the hidden causes: for the instructor and the
   class report), and per learner results.json (the shape test runners use: version, status
   pass/fail/error, message, per-question tests) and feedback.md (never names the cause).

Class scoring, per question, out of 1 (kept here, documented, to be unified with a learner's
score later): the cause named right is worth CAUSE_POINTS; the fix earns FIX_POINTS times its
credit in FIX_CREDIT (resolved 1; resolved with unneeded extra changes, or a workaround, 0.5;
masked, not resolved, timed out or crashed 0). An answer that cannot be graded (malformed,
another learner's, an unknown id) scores 0. A question passes when the cause is right and the
fix resolves it with no unneeded change (the grader's own `passed`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import app
from .classroom import Classroom

RESULTS_VERSION = 2            # the results.json shape of test runners (version 2: per-test)
CAUSE_POINTS, FIX_POINTS = 0.4, 0.6
FIX_CREDIT = {"resolved": 1.0, "shotgun": 0.5, "workaround": 0.5, "masked": 0.0,
              "not_resolved": 0.0, "timed_out": 0.0, "crashed": 0.0, "none": 0.0}
TIME_LIMIT_S = 120.0           # per answer: the broken run and every re-run of its fix, in
WALL_BACKSTOP = 10             # CPU seconds (Linux), and never more than 10x that in wall time
MEMORY_CAP_MB = 4096           # per worker process (address space)
ANSWER_NAMES = ("answer.json",)


@dataclass
class Row:
    """One submitted answer file, graded (or why it could not be)."""
    submission: str
    learner: str
    question: str = ""
    status: str = "error"          # pass | fail | error | superseded
    cause_correct: bool | None = None
    fix_verdict: str = ""          # resolved | workaround | masked | not_resolved | shotgun | ...
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    # for the instructor and the class report (grades.json), never for learners
    named_cause: str | None = None
    true_cause: str | None = None
    fixes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)
    minutes: float | None = None
    submitted: float | None = None
    checks: list[dict] = field(default_factory=list)
    cached: bool = False


@dataclass
class Gradebook:
    rows: list[Row]
    folder: Path
    runs: int = 0                  # answers re-run in workers this time
    cached: int = 0                # answers served from the cache
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# collecting and checking answer files
# --------------------------------------------------------------------------------------------

def collect(paths: Sequence[Path]) -> list[Path]:
    """The answer files named, or found under the folders named, each once, in order: every
    JSON file below a folder, except the run and evidence files of an assignment folder
    handed in whole (those beside an answer.json, and below it)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            roots = {p.parent for p in path.rglob("*") if p.name in ANSWER_NAMES}
            found += sorted(p for p in path.rglob("*.json") if p.name in ANSWER_NAMES
                            or not roots & set(p.parents))
        elif path.exists():
            found.append(path)
        else:
            raise app.UsageError(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise app.UsageError("no answer files found in the submissions given")
    return unique


def _owner(path: Path, roster: set[str]) -> str | None:
    """The learner a file is handed in for, from its path: the innermost roster id among its
    folder names and its own name."""
    for part in reversed([*path.parent.parts, path.stem]):
        if part in roster:
            return part
    return None


@dataclass
class _Answer:
    row: Row
    scenario: str = ""
    seed: int = 0
    key: str = ""
    fixes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    incident: object = None


def _read(path: Path, classroom: Classroom) -> _Answer:
    """Check one answer file; a row with status 'error' and its reason when it cannot be
    graded."""
    roster = set(classroom.learners)
    owner = _owner(path, roster)
    row = Row(str(path), owner or "?")
    row.question = next((p for p in reversed(path.parts) if p in classroom.scenarios()), "")
    answer = _Answer(row)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return _fail(answer, "not a text file")
    except ValueError as error:
        return _fail(answer, f"not valid JSON ({error.args[0]})")
    problem = _shape_problem(data)
    if problem:
        return _fail(answer, f"not an answer file: {problem}")
    meta = data["assignment"]
    claimed, row.question = meta["learner"], meta["scenario"]
    row.learner = owner or claimed
    row.named_cause = data.get("cause") or None
    row.fixes, row.settings = list(data.get("fixes") or []), dict(data.get("settings") or {})
    row.probes = [str(p) for p in data.get("probes") or []]
    row.submitted = data.get("submitted")
    if data.get("started") and data.get("submitted"):
        row.minutes = round((data["submitted"] - data["started"]) / 60, 2)
    if claimed not in roster:
        return _fail(answer, f"learner '{claimed}' is not on this class's roster")
    if owner and owner != claimed:
        return _fail(answer, f"this is learner {claimed}'s answer file (their variant), "
                             f"handed in for {owner}")
    if meta["scenario"] not in classroom.scenarios():
        return _fail(answer, f"'{meta['scenario']}' was not assigned to this class")
    if meta.get("token") != classroom.token(claimed, meta["scenario"], meta["seed"]) \
            or meta["seed"] != classroom.seed(claimed, meta["scenario"]):
        return _fail(answer, f"the assignment token does not match {claimed}'s variant of "
                             f"{meta['scenario']} (edited, or another learner's file)")
    answer.scenario, answer.seed = meta["scenario"], meta["seed"]
    answer.key = classroom.learner_key(claimed)
    answer.fixes, answer.settings = row.fixes, row.settings
    try:
        answer.incident = app.incident(answer.scenario, answer.seed, key=answer.key)
        row.true_cause = answer.incident.cause_id
        if row.named_cause is not None:
            answer.incident.scenario.cause(row.named_cause)
        if row.fixes or row.settings:
            fixed = app.with_fixes(answer.incident, row.fixes, row.settings)
            answer.settings = dict(fixed.sets)
    except (app.UsageError, LookupError) as error:
        return _fail(answer, error.args[0])
    return answer


def _shape_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "expected a JSON object"
    meta = data.get("assignment")
    if not isinstance(meta, dict) or not all(k in meta for k in ("learner", "scenario", "seed")):
        return "no 'assignment' with learner, scenario and seed (use the file you were given)"
    if not isinstance(meta["seed"], int) or not isinstance(meta["learner"], str) \
            or not isinstance(meta["scenario"], str):
        return "the 'assignment' block was edited"
    if data.get("cause") is not None and not isinstance(data["cause"], str):
        return "'cause' must be a cause id (a string)"
    fixes = data.get("fixes") or []
    if not isinstance(fixes, list) or not all(isinstance(f, str) for f in fixes):
        return "'fixes' must be a list of fix ids"
    if not isinstance(data.get("settings") or {}, dict):
        return "'settings' must be an object such as {\"lr\": 0.001}"
    return None


def _fail(answer: _Answer, reason: str) -> _Answer:
    answer.row.status, answer.row.score = "error", 0.0
    answer.row.reasons.append(reason)
    return answer


def _latest_first(answers: list[_Answer]) -> list[_Answer]:
    """Mark every answer but the last submitted of each (learner, question) as superseded."""
    groups: dict[tuple[str, str], list[_Answer]] = {}
    for a in answers:
        if a.incident is not None and not a.row.reasons:
            groups.setdefault((a.row.learner, a.row.question), []).append(a)
    for group in groups.values():
        group.sort(key=lambda a: (a.row.submitted or 0, Path(a.row.submission).stat().st_mtime))
        for older in group[:-1]:
            older.row.status = "superseded"
            older.row.reasons.append(f"superseded by {group[-1].row.submission} (submitted "
                                     "later): not counted")
    return [a for a in answers if a.incident is not None and a.row.status == "error"
            and not a.row.reasons]


# --------------------------------------------------------------------------------------------
# the re-runs: cache key, worker processes
# --------------------------------------------------------------------------------------------

def code_digest() -> str:
    """A digest of the code that grades (engine, scenarios): the cache holds for it only."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*(root / "sim").rglob("*.py"), *(root / "scenarios").rglob("*.py")]):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def job_key(answer: _Answer, code: str) -> str:
    """The re-run's identity: the incident, the fixes and the settings (and the code)."""
    text = json.dumps({"code": code, "scenario": answer.scenario, "seed": answer.seed,
                       "incident": hashlib.sha256(answer.key.encode()).hexdigest(),
                       "fixes": answer.fixes, "settings": answer.settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rerun(job: dict) -> dict:
    """Grade one answer's fix by re-running it (in a worker): the run-derived part of the
    verdict, without the cause (judged apart)."""
    if not job["fixes"] and not job["settings"]:
        return {"fix_verdict": "none", "reasons": ["no fix or setting named"], "checks": []}
    incident = app.incident(job["scenario"], job["seed"], key=job["key"])
    verdict = app.grade(incident, None, job["fixes"], job["settings"])
    fix_verdict = verdict.fix_verdict
    reasons = [f"{c.name}: {c.detail}" for c in verdict.after_checks if not c.ok]
    if verdict.after.status == "error" and "allocate memory" in (verdict.after.error or ""):
        fix_verdict = "crashed"
        error = verdict.after.error
        detail = error[error.find("can't allocate"):]
        reasons = [f"the re-run went past the memory cap ({detail.split('. ')[0]})"]
    elif fix_verdict == "workaround":
        reasons = [f"a workaround, not a fix: {cost}" for cost in verdict.costs]
    elif fix_verdict == "masked":
        reasons.append("the fix hides the symptom: non-finite steps still happen, skipped")
    elif fix_verdict == "resolved" and verdict.unneeded:
        fix_verdict = "shotgun"
        reasons = [f"unneeded changes (the re-run passes without them): "
                   f"{', '.join(verdict.unneeded)}"]
    return {"fix_verdict": fix_verdict, "reasons": reasons,
            "checks": [asdict(c) for c in verdict.after_checks]}


def _worker(conn, memory_cap_mb: int) -> None:
    """A grading worker: imports once, caps its memory, then grades jobs until told to stop."""
    import resource
    import torch
    torch.set_num_threads(1)
    from .engines import get
    get("training"), get("planner")
    if memory_cap_mb:
        cap = memory_cap_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        started = time.process_time()
        try:
            result = rerun(job)
        except MemoryError:
            result = {"fix_verdict": "crashed", "reasons": ["the re-run went past the memory "
                                                        f"cap of {memory_cap_mb} MB"]}
        except Exception as error:       # a crash in one answer's re-run is that answer's
            result = {"fix_verdict": "crashed",
                      "reasons": [f"the re-run crashed: {type(error).__name__}: {error}"]}
        conn.send({**result, "cpu_s": round(time.process_time() - started, 2)})


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class _Pool:
    """Worker processes with a time limit per job: a worker past it is killed and replaced."""

    def __init__(self, size: int, time_limit: float, memory_cap_mb: int):
        import multiprocessing
        self.context = multiprocessing.get_context("spawn")
        self.size, self.time_limit, self.memory_cap_mb = size, time_limit, memory_cap_mb
        self.workers: list[dict] = []
        self.failed_starts = 0

    def _start(self) -> dict:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.memory_cap_mb),
                                       daemon=True)
        process.start()
        child.close()
        worker = {"process": process, "conn": parent, "ready": False, "job": None,
                  "since": None}
        self.workers.append(worker)
        return worker

    def run(self, jobs: list[tuple[str, dict]], done: Callable[[str, dict], None]) -> None:
        from multiprocessing.connection import wait
        pending = list(jobs)
        for _ in range(min(self.size, len(pending))):
            self._start()
        try:
            while pending or any(w["job"] for w in self.workers):
                for worker in self.workers:
                    if worker["ready"] and worker["job"] is None and pending:
                        worker["job"] = pending.pop(0)
                        worker["since"] = time.monotonic()
                        worker["cpu_since"] = _cpu_seconds(worker["process"].pid)
                        worker["conn"].send(worker["job"][1])
                ready = wait([w["conn"] for w in self.workers], timeout=0.25)
                for worker in list(self.workers):
                    if worker["conn"] in ready:
                        self._receive(worker, done, bool(pending))
                    elif worker["job"] and self._past_limit(worker):
                        done(worker["job"][0], {"fix_verdict": "timed_out", "reasons": [
                            f"the re-run did not finish within the time limit of "
                            f"{self.time_limit:g} s; stopped"]})
                        self._replace(worker, bool(pending))
        finally:
            self.close()

    def _past_limit(self, worker: dict) -> bool:
        """Past the limit in CPU seconds where the system reports them (a shared machine's
        load does not count against an answer), else in wall seconds; and in any case past
        WALL_BACKSTOP times the limit of wall time."""
        wall = time.monotonic() - worker["since"]
        cpu = _cpu_seconds(worker["process"].pid)
        used = wall if cpu is None or worker["cpu_since"] is None else cpu - worker["cpu_since"]
        return used > self.time_limit or wall > WALL_BACKSTOP * self.time_limit

    def _receive(self, worker: dict, done, more: bool) -> None:
        try:
            message = worker["conn"].recv()
        except (EOFError, OSError):
            worker["process"].join(1)
            if not worker["ready"]:
                self.failed_starts += 1
                if self.failed_starts >= 3:
                    raise RuntimeError("grading workers die as they start (exit code "
                                       f"{worker['process'].exitcode}): see the messages above")
            if worker["job"]:
                done(worker["job"][0], {"fix_verdict": "crashed", "reasons": [
                    f"the grading process died (exit code {worker['process'].exitcode})"]})
            self._replace(worker, more)
            return
        if message == "ready":
            worker["ready"] = True
        else:
            done(worker["job"][0], message)
            worker["job"] = None

    def _replace(self, worker: dict, more: bool) -> None:
        worker["process"].kill()
        worker["process"].join(5)
        worker["conn"].close()
        self.workers.remove(worker)
        if more:
            self._start()

    def close(self) -> None:
        for worker in list(self.workers):
            if worker["job"] is None and worker["ready"]:
                try:
                    worker["conn"].send(None)
                except OSError:
                    pass
            worker["process"].join(2 if worker["job"] is None else 0)
            if worker["process"].is_alive():
                worker["process"].kill()
                worker["process"].join(5)
            worker["conn"].close()
        self.workers = []


# --------------------------------------------------------------------------------------------
# grading a class
# --------------------------------------------------------------------------------------------

def grade(classroom: Classroom, paths: Sequence[Path], jobs: int | None = None,
          time_limit: float = TIME_LIMIT_S, memory_cap_mb: int = MEMORY_CAP_MB,
          progress: Callable[[int, int, int], None] = lambda done, total, cached: None
          ) -> Gradebook:
    """Grade every answer file; write the gradebook under DIR/grades/; return it."""
    started = time.monotonic()
    answers = [_read(path, classroom) for path in collect(paths)]
    gradable = _latest_first(answers)
    out = classroom.folder / "grades"
    cache_dir = out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    code = code_digest()
    by_key: dict[str, list[_Answer]] = {}
    for answer in gradable:
        by_key.setdefault(job_key(answer, code), []).append(answer)
    results: dict[str, dict] = {}
    for key in by_key:
        cached = cache_dir / f"{key}.json"
        if cached.exists():
            result = json.loads(cached.read_text())
            if _still_holds(result, time_limit, memory_cap_mb):
                results[key] = {**result, "cached": True}
    todo = [(key, {"scenario": group[0].scenario, "seed": group[0].seed, "key": group[0].key,
                   "fixes": group[0].fixes, "settings": group[0].settings})
            for key, group in by_key.items() if key not in results]
    progress(len(results), len(by_key), len(results))

    def done(key: str, result: dict) -> None:
        from .files import write_json
        results[key] = result
        write_json(cache_dir / f"{key}.json",
                   {**result, "time_limit_s": time_limit, "memory_cap_mb": memory_cap_mb})
        progress(len(results), len(by_key), len(by_key) - len(todo))

    if todo:
        size = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        _Pool(size, time_limit, memory_cap_mb).run(todo, done)
    for key, group in by_key.items():
        for answer in group:
            _score(answer.row, results[key])
    book = Gradebook([a.row for a in answers], out, len(todo), len(by_key) - len(todo),
                     time.monotonic() - started)
    write_gradebook(book)
    return book


def _still_holds(result: dict, time_limit: float, memory_cap_mb: int) -> bool:
    """A cached re-run holds unless it was stopped by a limit that is now more generous."""
    if result["fix_verdict"] == "timed_out":
        return time_limit <= result.get("time_limit_s", 0)
    if result["fix_verdict"] == "crashed":
        return 0 < memory_cap_mb <= result.get("memory_cap_mb", 0)
    return True


def _score(row: Row, result: dict) -> None:
    verdict = result["fix_verdict"]
    row.fix_verdict, row.checks, row.cached = verdict, result.get("checks", []), \
        bool(result.get("cached"))
    row.cause_correct = row.named_cause is not None and row.named_cause == row.true_cause
    row.score = round(CAUSE_POINTS * row.cause_correct + FIX_POINTS * FIX_CREDIT[verdict], 3)
    row.reasons = [("cause: right" if row.cause_correct else
                    "cause: not named" if row.named_cause is None else "cause: not right"),
                   f"fix: {verdict.replace('_', ' ')}", *result["reasons"]]
    passed = row.cause_correct and verdict == "resolved"
    row.status = "error" if verdict in ("timed_out", "crashed") else \
        "pass" if passed else "fail"


# --------------------------------------------------------------------------------------------
# the gradebook's files
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("learner", "question", "submission", "status", "cause_right", "fix_verdict",
               "score", "reasons")


def write_gradebook(book: Gradebook) -> None:
    from .files import write_atomic, write_json
    out = book.folder
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in book.rows:
        writer.writerow([row.learner, row.question, row.submission, row.status,
                         "" if row.cause_correct is None else str(row.cause_correct).lower(),
                         row.fix_verdict, f"{row.score:.2f}", "; ".join(row.reasons)])
    write_atomic(out / "grades.csv", buffer.getvalue())
    write_json(out / "grades.json", {"format_version": 1, "rows": [asdict(r) for r in book.rows]})
    for learner in sorted({r.learner for r in book.rows}):
        rows = [r for r in book.rows if r.learner == learner]
        folder = out / ("unattributed" if learner == "?" else learner)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "results.json", results_json(rows))
        write_atomic(folder / "feedback.md", feedback_md(learner, rows))


def results_json(rows: list[Row]) -> dict:
    """A learner's results in the shape test runners use: version, status, message, tests."""
    counted = [r for r in rows if r.status != "superseded"]
    tests = [{"name": r.question or Path(r.submission).name,
              "status": r.status if r.status != "superseded" else "skip",
              "message": "; ".join(r.reasons), "score": r.score,
              "cause_correct": r.cause_correct, "fix_verdict": r.fix_verdict or None,
              "submission": r.submission} for r in rows]
    errors = [r for r in counted if r.status == "error"]
    status = "error" if errors else "pass" if all(r.status == "pass" for r in counted) \
        else "fail"
    message = "; ".join(f"{Path(r.submission).name}: {r.reasons[-1]}" for r in errors) or None
    return {"version": RESULTS_VERSION, "status": status, "message": message, "tests": tests}


def feedback_md(learner: str, rows: list[Row]) -> str:
    """What a learner reads: right or wrong, the re-run's checks; never the hidden cause."""
    lines = [f"# Feedback for {learner}", ""]
    for row in rows:
        lines += [f"## {row.question or Path(row.submission).name} — {row.status.upper()} "
                  f"(score {row.score:.2f} of 1)", "", f"Submission: `{row.submission}`", ""]
        if row.fixes or row.settings:
            sets = " ".join(f"{k}={v}" for k, v in row.settings.items())
            lines.append(f"Your fix: {', '.join(row.fixes) or '(none)'}"
                         + (f" with {sets}" if sets else ""))
        lines += [f"- {reason}" for reason in row.reasons]
        if row.checks:
            lines += ["", "The re-run with your fix:"]
            lines += [f"  - [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}"
                      for c in row.checks]
        lines.append("")
    return "\n".join(lines)


def progress_bar(done: int, total: int, cached: int | None = None, width: int = 30) -> str:
    """One line, redrawn in place ('\\r'): done of total, and how many came from the cache."""
    filled = round(width * done / total) if total else width
    return (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
            + (f" ({cached} cached)" if cached is not None else ""))


def summary_lines(book: Gradebook) -> list[str]:
    counted = [r for r in book.rows if r.status != "superseded"]
    count = {s: sum(r.status == s for r in book.rows)
             for s in ("pass", "fail", "error", "superseded")}
    mean = sum(r.score for r in counted) / len(counted) if counted else 0.0
    return [f"{len(book.rows)} answer files: {count['pass']} passed, {count['fail']} failed, "
            f"{count['error']} could not be graded, {count['superseded']} superseded; "
            f"mean score {mean:.2f}",
            f"re-ran {book.runs} distinct answers, {book.cached} from the cache, "
            f"in {book.seconds:.1f} s",
            f"gradebook: {book.folder}/grades.csv; per learner: {book.folder}/LEARNER/"
            "results.json and feedback.md"]
