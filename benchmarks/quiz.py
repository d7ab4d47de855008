"""Time making a quiz pack and taking it (not a pytest test: run it by hand).

    .venv/bin/python benchmarks/quiz.py [--count 10] [--seed 1] [--format html]

Makes a pack of `--count` questions over the whole catalogue in a fresh interpreter
(`debugsim quiz make`, as a user runs it: imports, simulating every incident, plots, sealing),
then takes it in another (`debugsim quiz take`, answers piped, always the first option), and
reports, for the take, the time from the start of the process to each question shown and the
time per question shown. Taking must not train: it reads pack.json and opens sealed answers.
Wall and CPU times are both shown (the machine may be shared: CPU time is the work itself).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEBUGSIM = [sys.executable, "-c", "from debugsim.cli import main; main()"]


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args, stdin: str | None = None, on_line=None) -> tuple[float, float, str]:
    cpu, started = child_cpu(), time.perf_counter()
    process = subprocess.Popen(DEBUGSIM + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    if stdin is not None:
        process.stdin.write(stdin)
    process.stdin.close()
    output = []
    for line in process.stdout:
        output.append(line)
        if on_line:
            on_line(line, time.perf_counter() - started)
    if process.wait():
        sys.exit("".join(output[-20:]))
    return time.perf_counter() - started, child_cpu() - cpu, "".join(output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", default="md", choices=["md", "html"])
    options = parser.parse_args()
    print(f"cores {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}, "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as scratch:
        pack = Path(scratch) / "pack"
        wall, cpu, out = timed(["quiz", "make", "--count", str(options.count), "--out",
                                str(pack), "--seed", str(options.seed), "--format",
                                options.format, "--key-out", str(Path(scratch) / "key.json")])
        sims = [float(line.split()[2]) for line in out.splitlines() if "done in" in line]
        print(f"make {options.count} questions ({options.format}): {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU; simulating per incident: min {min(sims):.1f} s, "
              f"max {max(sims):.1f} s, sum {sum(sims):.1f} s")
        size = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
        print(f"pack: {len(list(pack.rglob('*.png')))} PNGs, {size / 1e6:.1f} MB")
        shown: list[float] = []
        wall, cpu, _ = timed(["quiz", "take", str(pack), "--results",
                              str(Path(scratch) / "results.json")], "a\na\n" * options.count,
                             lambda line, at: shown.append(at) if line.startswith("=== ")
                             else None)
        gaps = [b - a for a, b in zip(shown, shown[1:])]
        print(f"take {options.count} questions: {wall:.2f} s wall, {cpu:.2f} s CPU in all; "
              f"first question shown after {shown[0]:.2f} s (start-up included); "
              f"{wall / options.count:.3f} s per question shown (goal <= 0.5 s); "
              f"between questions: max {max(gaps) if gaps else 0:.3f} s")


if __name__ == "__main__":
    main()
