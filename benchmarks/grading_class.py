"""Class grading throughput: a simulated class of 30 graded cold, then from the cache, and the
same with one answer that never finishes.

Run from the repository root:

    .venv/bin/python benchmarks/grading_class.py                  # jobs = 2, hang limit 20 s
    .venv/bin/python benchmarks/grading_class.py --keep /tmp/c    # keep the class folders
    .venv/bin/python benchmarks/grading_class.py --jobs 4 --time-limit 10

The class: 30 learners with a fixed key (so every run grades the same incidents), one
question each (12 oom_13b, 12 nan_loss, 6 repetitive_decoding), plus one learner handing in a
second, later answer (a duplicate): 31 answer files. The answers are drawn by a seeded model
of a class (most name the right cause; some pick a masking fix, a workaround, a shotgun of
fixes, the fix of a wrong cause), and three files are broken on purpose: malformed JSON, an
unknown fix id, and one learner's file handed in for another. Grading is real: every distinct
answer is re-run in worker processes. The hanging answer sets `grad_accum_steps=100000` on
nan_loss, which the recipe allows, and which would take hours.

Targets (issue 8, on 2 cores): cold <= 30 s, cached <= 1 s. Absolute times depend on the
machine and its load, so the load average is printed with every row, with the CPU seconds
(this process and its workers) beside the wall seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from debugsim.sim import app, assign, classgrade, classreport, classroom

KEY = "benchmark-class-key-0123456789abcdef"
QUESTIONS = ["oom_13b"] * 12 + ["nan_loss"] * 12 + ["repetitive_decoding"] * 6
PROBES = {"oom_13b": ["plan", "strategies"],
          "nan_loss": ["table", "plot loss", "plot grad_norm", "batch 8", "anomaly", "grads 8"],
          "repetitive_decoding": ["table", "plot loss", "samples", "samples kv_cache=false",
                                  "samples temperature=1.5"]}
HANG = {"grad_accum_steps": 100000}


def simulated_answer(klass, learner: str, scenario_id: str, rng: random.Random) -> dict:
    """One learner's answer, drawn by a simple model of a class."""
    spec = app.scenario(scenario_id)
    truth = assign.learner_incident(klass, learner, scenario_id).cause_id
    right = rng.random() < 0.7
    named = truth if right else rng.choice([c.id for c in spec.causes if c.id != truth])
    resolving = list(spec.resolves[named])
    roll = rng.random()
    if right and spec.masks.get(truth) and roll < 0.3:
        fixes = [spec.masks[truth][0]]                       # masks the symptom
    elif right and roll < 0.15:
        others = [f.id for f in spec.fixes if f.id not in resolving]
        fixes = [resolving[0], *rng.sample(others, 2)]       # a shotgun of fixes
    else:
        fixes = [rng.choice(resolving)]                      # incl. a workaround, if any
    tells = PROBES[scenario_id]
    probes = rng.sample(tells, rng.randint(2 if right else 1, len(tells) if right else 3))
    minutes = max(3.0, rng.gauss(24, 8) if right else rng.gauss(14, 6))
    data = assign.blank_answer(klass, learner, spec, klass.seed(learner, scenario_id), None)
    data.update(cause=named, fixes=fixes, probes=probes, started=1_800_000_000.0,
                submitted=1_800_000_000.0 + 60 * minutes,
                justification="the evidence pointed there")
    return data


def make_class(folder: Path, hang: bool) -> tuple[classroom.Classroom, Path]:
    klass = classroom.init(folder, "Simulated class of 30", learners=len(QUESTIONS), key=KEY)
    klass.record_assignment(sorted(set(QUESTIONS)), None)
    rng = random.Random(8)
    subs = folder.parent / f"{folder.name}-submissions"
    answers = {}
    for learner, scenario_id in zip(klass.learners, QUESTIONS):
        answers[learner] = simulated_answer(klass, learner, scenario_id, rng)
    answers["learner14"]["fixes"] = ["guard_divison"]               # unknown fix id
    answers["learner15"] = answers["learner16"]                      # 16's file, as 15's
    if hang:
        answers["learner17"].update(fixes=[], settings=HANG)
    for learner, data in answers.items():
        path = subs / learner / "answer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    (subs / "learner13" / "answer.json").write_text('{"cause": "lr_too_high", "fixes": [')
    duplicate = {**answers["learner20"], "submitted": answers["learner20"]["submitted"] + 300}
    (subs / "learner20" / "resubmitted").mkdir()
    (subs / "learner20" / "resubmitted" / "answer.json").write_text(json.dumps(duplicate))
    return klass, subs


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(klass, subs, jobs: int, time_limit: float):
    load = os.getloadavg()[0]
    cpu, wall = cpu_seconds(), time.monotonic()
    book = classgrade.grade(klass, [subs], jobs=jobs, time_limit=time_limit)
    return book, time.monotonic() - wall, cpu_seconds() - cpu, load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=20.0,
                        help="per answer, for the batch with the hanging answer")
    parser.add_argument("--keep", type=Path, help="write the class folders here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="debugsim-class-bench-"))
    if args.keep and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}  jobs: {args.jobs}  load average at start: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'batch':<34} {'wall s':>7} {'cpu s':>7} {'load':>5}  {'re-run':>6} "
          f"{'cached':>6}  target")
    failed = False
    for hang in (False, True):
        klass, subs = make_class(root / ("class-hang" if hang else "class"), hang)
        limit = args.time_limit if hang else classgrade.TIME_LIMIT_S
        for label, target in (("cold", 30.0), ("cached", 1.0)):
            book, wall, cpu, load = timed(klass, subs, args.jobs, limit)
            verdict = "" if hang else ("PASS" if wall <= target else "MISS")
            failed |= verdict == "MISS"
            name = f"{len(book.rows)} files, {label}" + (f", 1 hangs ({limit:g} s)" if hang
                                                        else "")
            print(f"{name:<34} {wall:>7.2f} {cpu:>7.2f} {load:>5.2f}  {book.runs:>6} "
                  f"{book.cached:>6}  {verdict or '-'}{f' (<= {target:g} s)' if verdict else ''}")
        if not hang:
            counts = {}
            for row in book.rows:
                counts[row.status] = counts.get(row.status, 0) + 1
            print(f"  statuses: {counts}")
            md, png = classreport.write_report(klass)
            print(f"  class report: {md} and {png}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if not args.keep:
        print(f"(folders in {root}; pass --keep DIR to choose where)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
