"""debugsim performance benchmark: every figure a ratio, measured in this one run.

Run from the repository root:

    .venv/bin/python benchmarks/run.py              # 5 repeats per measurement
    .venv/bin/python benchmarks/run.py --quick      # 3 repeats
    .venv/bin/python benchmarks/run.py --repeats 9 --only loop

The unit for the command-line rows is `python -c "import torch"`, timed in the same repeat as
the command it divides (paired ratios; the table gives the median over the repeats). The loop
rows divide by a bare PyTorch loop timed back to back with the variant, per step. Each row
says PASS or MISS against its goal, or INFO where it has none; absolute seconds and the CPU-time
ratio are in the detail column. See benchmarks/README.md for what each row measures.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEBUGSIM = str(BIN / "debugsim") if (BIN / "debugsim").exists() else None
SECTIONS = ("list", "run", "check", "breakdown", "loop", "grading")

RUN_GOAL = 2.0          # `debugsim run ID` / `import torch`, every training scenario
CHECK_GOAL = 1.8        # `debugsim check ...` / `import torch`
TRACKER_GOAL = 1.3      # bare loop + memory tracker / bare loop, per step, oom's model
TELEMETRY_GOAL = 1.10   # sim.loop.train with the Recorder / bare loop, per step, TrainConfig()
GRADE_GOAL_S = 0.5      # in-process grading, seconds per submission after warm-up (nan_loss/bad_lr)

UNIT = [sys.executable, "-c", "import torch"]
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = "cpu"           # which clock decides PASS/MISS (--clock); the other is in the detail


def clock() -> float:
    return CLOCKS[CLOCK]()

# `debugsim list` in-process, then prove that listing did not import torch.
NO_TORCH_SNIPPET = (
    "import io, sys, contextlib\nfrom debugsim import cli\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    cli.cli(['list'], standalone_mode=False)\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'matplotlib'})\n"
    "print(','.join(heavy))\n"
)

# What `debugsim run` does (cli._run_and_save), stage by stage, with a clock between stages.
BREAKDOWN_SNIPPET = r"""
import json, sys, time
now = time.process_time if sys.argv[3] == "cpu" else time.perf_counter
t0 = 0.0 if sys.argv[3] == "cpu" else now(); marks = {}   # CPU: from process start
import torch
marks["import torch"] = now()
from debugsim.sim import app
from debugsim.sim.report import write_summary_md
from debugsim.sim.plots import write_run_plots
marks["import debugsim"] = now()
out = __import__("pathlib").Path(sys.argv[2])
result = app.execute(app.incident(sys.argv[1], 0), out)
marks["train + metrics"] = now()
import matplotlib.figure, matplotlib.backends.backend_agg
marks["import matplotlib"] = now()
plots = write_run_plots(result, out)
marks["draw plots"] = now()
write_summary_md(result, out / "summary.md", plots)
marks["summary.md"] = now()
previous, stages = t0, {}
for name, at in marks.items():
    stages[name], previous = at - previous, at
stages["dynamo imported"] = "torch._dynamo" in sys.modules
print(json.dumps(stages))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def debugsim_cmd(*args: str) -> list[str]:
    if DEBUGSIM:
        return [DEBUGSIM, *args]
    return [sys.executable, "-c", "from debugsim import cli; cli.main()", *args]


def timed(cmd: list[str], cwd: Path, env: dict | None = None
          ) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall-clock seconds and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def cold_home(work: Path) -> dict:
    """The environment of a check that finds none of its runs kept: a fresh debugsim home
    holding only the pretrained checkpoints (made once, as a downloaded model would be), so a
    check never reuses the broken run that `run` kept a moment before (sim/run_store.py)."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    shared = Path(os.environ["DEBUGSIM_HOME"]) / "cache"
    (home / "cache").mkdir()
    for checkpoint in shared.glob("pretrained-*.pt"):
        shutil.copy(checkpoint, home / "cache" / checkpoint.name)
    return {**os.environ, "DEBUGSIM_HOME": str(home)}


def spread(values, unit: str = "") -> str:
    return f"n={len(values)} min {min(values):.3g}{unit} max {max(values):.3g}{unit}"


def median_ratio(numerators, denominators) -> tuple[float, list[float]]:
    ratios = [n / d for n, d in zip(numerators, denominators)]
    return statistics.median(ratios), ratios


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, value: str, goal: str, result: str, detail: str = "") -> None:
        self.rows.append((name, value, goal, result, detail))
        log(f"  {name}: {value} [{result}]")

    def ratio(self, name: str, value: float, goal: float | None, detail: str, ok: bool = True):
        if goal is None:
            self.add(name, f"{value:.2f}x", "-", "INFO", detail)
        else:
            self.add(name, f"{value:.2f}x", f"<= {goal:.2f}x",
                     "PASS" if ok and value <= goal else "MISS", detail)

    def render(self) -> str:
        head = ("measurement", "ratio", "goal", "result", "detail")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in self.rows]
        return "\n".join(lines)


# --- command-line rows: list, run, check, each over `import torch` -------------------------

def training_plan(work: Path) -> list[dict]:
    """Every training scenario, with seed 0's drawn cause and a fix that resolves it."""
    proc = subprocess.run(debugsim_cmd("list", "--json"), cwd=work, capture_output=True,
                          text=True, check=True)
    from debugsim.sim import registry
    plan = []
    for entry in json.loads(proc.stdout):
        scenario = registry.get(entry["id"])
        if scenario.engine != "training":
            continue
        from debugsim.sim import app
        cause = app.incident(scenario.id, 0).cause_id
        shown = subprocess.run(debugsim_cmd("show", scenario.id, "--answers", "--json"),
                               cwd=work, capture_output=True, text=True, check=True)
        causes = {c["id"]: c for c in json.loads(shown.stdout)["causes"]}
        fixes = causes[cause]["resolved_by"]
        plan.append({"id": scenario.id, "cause": cause, "fix": fixes[0] if fixes else None})
    return plan


def bench_cli(table: Table, repeats: int, work: Path, sections) -> None:
    plan = training_plan(work) if {"run", "check"} & set(sections) else []
    timed(UNIT, work)                                        # warm the page cache
    timed(debugsim_cmd("list"), work)
    jobs: dict[str, list[str]] = {}
    if "list" in sections:
        jobs["list"] = debugsim_cmd("list")
    for p in plan:
        if "run" in sections:
            jobs[f"run {p['id']}"] = debugsim_cmd("run", p["id"], "--seed", "0", "--out", "OUT",
                                                  "--json")
        if "check" in sections and p["fix"]:
            jobs[f"check {p['id']}"] = debugsim_cmd("check", p["id"], "--seed", "0", "--cause",
                                                    p["cause"], "--fix", p["fix"], "--json")
            if "run" in sections and p["id"] == "nan_loss":     # a learner's usual order
                jobs["check nan_loss after run"] = jobs[f"check {p['id']}"]
    unit_wall, unit_cpu = [], []
    wall = {name: [] for name in jobs}
    cpu = {name: [] for name in jobs}
    failures: dict[str, str] = {}
    for rep in range(repeats):
        seconds, cpu_seconds, _ = timed(UNIT, work)
        unit_wall.append(seconds)
        unit_cpu.append(cpu_seconds)
        for name, cmd in jobs.items():
            out = work / f"out-{rep}"
            cmd = [str(out) if part == "OUT" else part for part in cmd]
            seconds, cpu_seconds, proc = timed(cmd, work, cold_home(work) if name.startswith(
                "check ") and not name.endswith("after run") else None)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            if name.startswith("run "):
                missing = [f for f in ("metrics.jsonl", "summary.json", "config.json",
                                       "summary.md", "plots/dashboard.png")
                           if not (out / f).exists()]
                if proc.returncode != 0 or missing:
                    failures.setdefault(name, f"rc={proc.returncode} missing={missing}")
            elif proc.returncode != 0:
                failures.setdefault(name, f"rc={proc.returncode}: "
                                          + (proc.stderr.strip()[-160:] or "check not passed"))
            shutil.rmtree(out, ignore_errors=True)
        log(f"  command-line repeat {rep + 1}/{repeats} done")

    main, other = (cpu, wall) if CLOCK == "cpu" else (wall, cpu)
    unit_main, unit_other = (unit_cpu, unit_wall) if CLOCK == "cpu" else (unit_wall, unit_cpu)
    other_name = "wall" if CLOCK == "cpu" else "CPU"
    table.add("unit: python -c 'import torch'", "1.00x", "-", "INFO",
              f"median {statistics.median(unit_main):.3f} s {CLOCK}, "
              f"{statistics.median(unit_other):.3f} s {other_name}; "
              + spread(unit_main, " s"))
    for name in jobs:
        value, ratios = median_ratio(main[name], unit_main)
        other_value, _ = median_ratio(other[name], unit_other)
        detail = (f"{statistics.median(main[name]):.3f} s {CLOCK}; {other_name} ratio "
                  f"{other_value:.2f}x; paired {spread(ratios, 'x')}")
        if name.startswith("check "):
            p = next(p for p in plan if p["id"] == name.split()[1])
            detail = f"--seed 0 --cause {p['cause']} --fix {p['fix']}; " + detail
            detail = ("the broken run kept by `run` just before; " if name.endswith("after run")
                      else "a home without kept runs; ") + detail
        if name in failures:
            detail = f"FAILED {failures[name]}; " + detail
        goal = RUN_GOAL if name.startswith("run ") else None if name.endswith("after run") \
            else CHECK_GOAL if name.startswith("check ") else None
        table.ratio(name, value, goal, detail, ok=name not in failures)
    for p in plan:
        if "check" in sections and not p["fix"]:
            table.add(f"check {p['id']}", "-", f"<= {CHECK_GOAL:.2f}x", "MISS",
                      f"no resolving fix listed for {p['cause']}")

    if "list" in sections:
        proc = subprocess.run([sys.executable, "-c", NO_TORCH_SNIPPET], cwd=work,
                              capture_output=True, text=True)
        heavy = [m for m in proc.stdout.strip().split(",") if m] if proc.returncode == 0 else None
        if heavy is None:
            table.add("list: torch not imported", "error", "torch absent", "MISS",
                      proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
        else:
            table.add("list: torch not imported", "torch absent" if "torch" not in heavy
                      else "torch LOADED", "torch absent", "PASS" if "torch" not in heavy
                      else "MISS", "heavy modules loaded: " + (", ".join(heavy) or "none"))


def bench_breakdown(table: Table, repeats: int, work: Path) -> None:
    """Where `debugsim run` spends its time, per training scenario, as shares of the unit."""
    scenarios = [p["id"] for p in training_plan(work)]
    unit_times = []
    stages = {sid: [] for sid in scenarios}
    for rep in range(repeats):
        unit_times.append(timed(UNIT, work)[0 if CLOCK == "wall" else 1])
        for sid in scenarios:
            out = work / f"breakdown-{sid}-{rep}"
            proc = subprocess.run([sys.executable, "-c", BREAKDOWN_SNIPPET, sid, str(out), CLOCK],
                                  cwd=work, capture_output=True, text=True)
            shutil.rmtree(out, ignore_errors=True)
            if proc.returncode != 0:
                table.add(f"breakdown {sid}", "error", "-", "MISS",
                          proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
                return
            stages[sid].append(json.loads(proc.stdout))
        log(f"  breakdown repeat {rep + 1}/{repeats} done")
    unit = statistics.median(unit_times)
    for sid in scenarios:
        names = [k for k in stages[sid][0] if k != "dynamo imported"]
        parts = {k: statistics.median(s[k] for s in stages[sid]) / unit for k in names}
        total = sum(parts.values())
        dynamo = any(s["dynamo imported"] for s in stages[sid])
        table.add(f"breakdown run {sid}", f"{total:.2f}x", "-", "INFO",
                  "; ".join(f"{k} {v:.2f}x" for k, v in parts.items())
                  + f"; torch._dynamo {'IMPORTED' if dynamo else 'not imported'}")


# --- loop rows: per step, over a bare PyTorch loop ----------------------------------------

def bare_train(config, device=None):
    """What sim.loop.train does for `config`, minus callbacks and telemetry; with `device` (a
    SimulatedDevice) it also runs under the memory tracker, in the same phases as train().

    Same seed, data stream, model, optimizer, learning-rate schedule, micro-batching, loss,
    backward, grad-norm measurement (with its .item() sync), clipping, step, zero_grad and the
    held-out evaluation. Returns (per-step mean losses, seconds spent in the steps).
    """
    import math
    import torch
    from debugsim.sim.data import Batch, make_stream
    from debugsim.sim.loop import autocast_for, build_optimizer, loss_scale_of, lr_at, token_loss
    from debugsim.sim.models import build_model

    assert loss_scale_of(config) is None, "bare loop covers unscaled precision only"
    torch.manual_seed(config.seed)
    stream = make_stream(config)
    model = build_model(config).to(config.device)
    optimizer = build_optimizer(config, model)
    none = contextlib.nullcontext()
    phase = device.phase_of if device is not None else (lambda name: none)
    untracked = device.untracked if device is not None else (lambda: none)

    def to(t):
        return None if t is None else t.to(config.device, copy=True)

    history = []
    with device if device is not None else none:
        if device is not None:
            device.track_module(model)
        start = clock()
        for step in range(config.steps):
            if device is not None:
                device.reset_step_peak()
            lr = lr_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = []
            for micro in range(config.grad_accum_steps):
                with untracked():
                    raw = stream.batch(step, micro)
                with phase("inputs"):
                    batch = Batch(raw.tokens.to(config.device, copy=True),
                                  raw.targets.to(config.device, copy=True), to(raw.key_padding))
                with phase("activations"), autocast_for(config):
                    logits = model(batch.tokens, batch.key_padding)
                    loss_sum, n_tokens = token_loss(logits, batch.targets)
                    loss = loss_sum / n_tokens.clamp(min=1)
                losses.append(loss.detach())
                with phase("gradients"):
                    (loss / config.grad_accum_steps).backward()
            history.append(torch.stack(losses).mean().item())
            with phase("gradients"):
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                grad_norm = torch.linalg.vector_norm(
                    torch.stack(torch._foreach_norm(grads))).item() if grads else 0.0
            finite = math.isfinite(grad_norm)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if not (config.skip_nonfinite and not (finite and math.isfinite(history[-1]))):
                with phase("optimizer_state"):
                    optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step == config.steps - 1 or (config.eval_every
                                            and (step + 1) % config.eval_every == 0):
                model.eval()
                with torch.no_grad(), phase("activations"):
                    with untracked():
                        eb = stream.eval_batch()
                    with autocast_for(config):
                        logits = model(eb.tokens.to(config.device), to(eb.key_padding))
                    s, c = token_loss(logits, eb.targets.to(config.device))
                    (s / c.clamp(min=1)).item()
                model.train()
        seconds = clock() - start
    return history, seconds


def train_steps_seconds(config, callbacks=()):
    """sim.loop.train, timed from the first step to the end of the last (setup excluded)."""
    from debugsim.sim.callbacks import Callback
    from debugsim.sim.loop import train

    class Clock(Callback):
        def on_run_start(self, run):
            self.start = clock()

        def on_run_end(self, run):
            self.seconds = clock() - self.start

    timer = Clock()
    train(config, [*callbacks, timer])
    return timer.seconds


def paired(variants: dict, repeats: int, label: str) -> dict[str, list[float]]:
    """Time each variant once per repeat, interleaved, rotating the order; after one warm-up."""
    for run in variants.values():
        run()
    times = {name: [] for name in variants}
    names = list(variants)
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            times[name].append(variants[name]())
        log(f"  {label} repeat {rep + 1}/{repeats} done")
    return times


def bench_loop(table: Table, repeats: int) -> None:
    import torch
    from debugsim.sim import app
    from debugsim.sim.config import TrainConfig
    from debugsim.sim.device import MiB, SimulatedDevice
    from debugsim.sim.loop import train
    from debugsim.sim.telemetry import Recorder
    from debugsim.sim.without_dynamo import plain_dispatch

    torch.set_num_threads(1)                       # as the training engine does

    @plain_dispatch
    class FloorDevice(SimulatedDevice):            # the device's contexts, nothing counted:
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))   # the floor of any Python dispatch hook

    # 1. the memory tracker, on the oom scenario's model (its healthy recipe, with its budget)
    oom = app.prepare("oom", 0).config
    untracked = dataclasses.replace(oom, memory_budget_mib=0.0)
    budget = int(oom.memory_budget_mib * MiB)
    bare_losses, _ = bare_train(untracked)
    tracked_losses, _ = bare_train(untracked, SimulatedDevice(budget))
    recorder = Recorder()
    train(oom, [recorder])
    same = bare_losses == tracked_losses and [float(f"{x:.6g}") for x in bare_losses] == \
        [r["loss"] for r in recorder.records]
    times = paired({
        "bare": lambda: bare_train(untracked)[1],
        "tracker": lambda: bare_train(untracked, SimulatedDevice(budget))[1],
        "floor": lambda: bare_train(untracked, FloorDevice(budget))[1],
        "instrumented": lambda: train_steps_seconds(oom, [Recorder()]),
    }, repeats, "tracker")
    steps = oom.steps
    bare_ms = 1000 * statistics.median(times["bare"]) / steps
    table.add("loop oom bare: per step", "1.00x", "-", "INFO",
              f"{bare_ms:.1f} ms/step ({CLOCK}) over {steps} steps; {spread(times['bare'], ' s')}")
    for name, label, goal in (
            ("tracker", "loop oom tracker / bare, per step", TRACKER_GOAL),
            ("floor", "loop oom pass-through dispatch / bare", None),
            ("instrumented", "loop oom train() (telemetry+tracker) / bare", None)):
        value, ratios = median_ratio(times[name], times["bare"])
        extra = {"tracker": "bare loop inside the SimulatedDevice, same phases as train()",
                 "floor": "the device's contexts with a __torch_dispatch__ that only calls the "
                          "op: what any Python dispatch hook costs here",
                 "instrumented": "sim.loop.train with the Recorder, as `debugsim run oom` "
                                 "trains"}[name]
        table.ratio(label, value, goal,
                    f"{extra}; {1000 * statistics.median(times[name]) / steps:.1f} ms/step; "
                    f"paired {spread(ratios, 'x')}", ok=same)
    table.add("loop oom: same losses bare/tracked/train()", "identical" if same else "DIFFERENT",
              "identical", "PASS" if same else "MISS", f"{steps} per-step losses")

    # 2. telemetry alone, on the default config (the loop's own overhead)
    base = TrainConfig()
    bare_losses, _ = bare_train(base)
    recorder = Recorder()
    train(base, [recorder])
    same = [float(f"{x:.6g}") for x in bare_losses] == [r["loss"] for r in recorder.records]
    times = paired({"bare": lambda: bare_train(base)[1],
                    "telemetry": lambda: train_steps_seconds(base, [Recorder()])},
                   repeats, "telemetry")
    value, ratios = median_ratio(times["telemetry"], times["bare"])
    table.ratio("loop default train() (telemetry) / bare", value, TELEMETRY_GOAL,
                f"TrainConfig(), {base.steps} steps, "
                f"{1000 * statistics.median(times['bare']) / base.steps:.1f} ms/step bare; "
                f"paired {spread(ratios, 'x')}", ok=same)
    table.add("loop default: same losses bare/train()", "identical" if same else "DIFFERENT",
              "identical", "PASS" if same else "MISS", f"{len(bare_losses)} per-step losses")


# --- main -----------------------------------------------------------------------------------

def bench_grading(table: Table) -> None:
    """Thirty submissions (nan_loss and bad_lr, a mix of right and wrong answers) graded
    in-process through the app layer, after one warm-up grade; then the same thirty again,
    which the run cache serves. Seconds are wall time per submission."""
    import torch
    from debugsim.sim import app, registry, runs
    torch.set_num_threads(1)
    submissions = []
    for index in range(30):
        scenario = registry.get(("nan_loss", "bad_lr")[index % 2])
        seed = 100 + index // 2
        cause = app.incident(scenario.id, seed).cause_id
        named = cause if index % 3 else scenario.causes[0].id          # some wrong causes
        fixes = list(scenario.resolves[cause][:1]) if index % 4 else [scenario.fixes[-1].id]
        submissions.append((scenario.id, seed, named, fixes))
    app.check("bad_lr", 99, registry.get("bad_lr").causes[0].id, ["lr_down_10x"])  # warm-up
    runs.clear_cache()
    timings = {}
    for label in ("cold", "cached"):
        start = time.perf_counter()
        verdicts = [json.dumps(app.check(*submission).to_dict(), sort_keys=True)
                    for submission in submissions]          # NaN == NaN as text
        timings[label] = (time.perf_counter() - start) / len(submissions)
        timings[label + " verdicts"] = verdicts
    same = timings["cold verdicts"] == timings["cached verdicts"]
    cold, cached = timings["cold"], timings["cached"]
    table.add("grade in-process, cold: s per submission", f"{cold:.2f} s",
              f"<= {GRADE_GOAL_S} s", "PASS" if cold <= GRADE_GOAL_S else "MISS",
              "30 nan_loss/bad_lr submissions via sim.app.check, after one warm-up grade")
    table.add("grade in-process, identical re-grades: s per submission", f"{cached:.3f} s",
              "served from the cache", "PASS" if same and cached < cold / 5 else "MISS",
              f"{cold / max(cached, 1e-9):.0f}x faster; verdicts "
              f"{'identical' if same else 'DIFFERENT'}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (5)")
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--clock", choices=sorted(CLOCKS) + ["auto"], default="auto",
                        help="which clock's ratios decide PASS/MISS (default auto: wall time on an "
                             "idle machine, the user's wait, which debugsim shortens with a "
                             "spare core; CPU time on a busy one, where wall time mostly "
                             "measures waiting for a core)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    # incidents come from a key: a fixed one (and a throwaway home) keeps the benchmark's runs
    # the same from machine to machine and out of the user's own record
    os.environ.setdefault("DEBUGSIM_KEY", "debugsim-benchmark")
    os.environ.setdefault("DEBUGSIM_HOME", tempfile.mkdtemp(prefix="debugsim-bench-home-"))
    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    global CLOCK
    sys.path.insert(0, str(ROOT))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= 0.5 * cores
    CLOCK = args.clock if args.clock != "auto" else ("cpu" if busy else "wall")
    print("debugsim benchmark")
    print(f"  cores usable: {cores} (os.cpu_count {os.cpu_count()}); "
          f"load average at start: {load_average()}")
    print(f"  torch {importlib.metadata.version('torch')}; python {platform.python_version()}; "
          f"{platform.system()} {platform.machine()}")
    print(f"  repeats: {repeats} (medians of paired ratios); clock: {CLOCK}; "
          f"sections: {', '.join(sections)}")
    if busy:
        print("  NOTE: the machine is busy (1-min load >= half the cores): ratios are noisy; "
              "rerun when idle before trusting a MISS" + (" (CPU-time ratios suffer less "
              "than wall-clock ones)" if CLOCK == "cpu" else ""))
    if CLOCK == "cpu":
        print("  NOTE: on the CPU clock, work debugsim does on a spare core (the broken run "
              "of a check, a run's plots: sim/parallel.py) counts in full although the user "
              "does not wait for it; the wall ratio is in the detail column")
    sys.stdout.flush()

    table = Table()
    table.add("load average at start", load_average(), "-", "INFO",
              f"1/5/15 min, {cores} cores usable")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="debugsim-bench-") as tmp:
        work = Path(tmp)
        if {"list", "run", "check"} & set(sections):
            log("command line ...")
            bench_cli(table, repeats, work, sections)
        if "breakdown" in sections:
            log("breakdown ...")
            bench_breakdown(table, repeats, work)
        if "loop" in sections:
            log("loop ...")
            bench_loop(table, repeats)
        if "grading" in sections:
            log("grading ...")
            bench_grading(table)
    elapsed = time.perf_counter() - started
    table.add("load average at end", load_average(), "-", "INFO", "1/5/15 min")
    print()
    print(table.render())
    misses = sum(1 for row in table.rows if row[3] == "MISS")
    passes = sum(1 for row in table.rows if row[3] == "PASS")
    print(f"\n{passes} PASS, {misses} MISS; benchmark took {elapsed:.0f} s")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
