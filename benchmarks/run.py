"""debugsim performance benchmark: CLI latency and training-loop overhead, as medians.

Run from the repository root:

    .venv/bin/python benchmarks/run.py              # 5 repeats per measurement
    .venv/bin/python benchmarks/run.py --quick      # 3 repeats
    .venv/bin/python benchmarks/run.py --repeats 9 --only loop

Prints machine facts, then one table row per measurement with its median, target and
PASS/MISS (or INFO where there is no target). Ratios are paired: each repeat times the bare
and the instrumented loop back to back in this process, and the median of those ratios is
reported. See benchmarks/README.md for what each line measures.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
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
SECTIONS = ("list", "run", "check", "loop")

LIST_TARGET_S = 0.3
RUN_TARGET_S = 3.0
CHECK_TARGET_S = 5.0
LOOP_RATIO_TARGET = 1.10

# `debugsim list` in-process, then prove that listing did not import torch.
NO_TORCH_SNIPPET = (
    "import io, sys, contextlib\nfrom debugsim import cli\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    cli.cli(['list'], standalone_mode=False)\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'matplotlib'})\n"
    "print(','.join(heavy))\n"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def debugsim_cmd(*args: str) -> list[str]:
    if DEBUGSIM:
        return [DEBUGSIM, *args]
    return [sys.executable, "-c", "from debugsim import cli; cli.main()", *args]


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def spread(values) -> str:
    return f"n={len(values)} min {min(values):.3g} max {max(values):.3g}"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, value: str, target: str, result: str, detail: str = "") -> None:
        self.rows.append((name, value, target, result, detail))
        log(f"  {name}: {value} [{result}]")

    def timing(self, name: str, samples: list[float], target: float, detail: str = "",
               ok: bool = True) -> None:
        med = statistics.median(samples)
        result = "PASS" if ok and med <= target else "MISS"
        extra = spread(samples) + (f"; {detail}" if detail else "")
        self.add(name, f"{med:.3f} s", f"<= {target:g} s", result, extra)

    def render(self) -> str:
        head = ("measurement", "median", "target", "result", "detail")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in self.rows]
        return "\n".join(lines)


# --- 1. `debugsim list` ------------------------------------------------------------------

def bench_list(table: Table, repeats: int, work: Path) -> None:
    timed(debugsim_cmd("list"), work)                        # warm the page cache
    samples = []
    for _ in range(repeats):
        seconds, proc = timed(debugsim_cmd("list"), work)
        if proc.returncode != 0:
            table.add("list: wall", "error", f"< {LIST_TARGET_S:g} s", "MISS",
                      proc.stderr.strip()[-200:])
            return
        samples.append(seconds)
    med = statistics.median(samples)
    table.add("list: wall", f"{med:.3f} s", f"< {LIST_TARGET_S:g} s",
              "PASS" if med < LIST_TARGET_S else "MISS", spread(samples))
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_SNIPPET], cwd=work,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        table.add("list: torch not imported", "error", "torch absent", "MISS",
                  proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
        return
    heavy = [m for m in proc.stdout.strip().split(",") if m]
    table.add("list: torch not imported", "torch absent" if "torch" not in heavy else "torch LOADED",
              "torch absent", "PASS" if "torch" not in heavy else "MISS",
              "heavy modules loaded: " + (", ".join(heavy) or "none"))


# --- 2./3. `debugsim run` and `debugsim check` ----------------------------------------------

def scenario_plan(work: Path) -> list[dict]:
    """Each scenario with seed 0's drawn cause and a fix that resolves it."""
    proc = subprocess.run(debugsim_cmd("list", "--json"), cwd=work, capture_output=True,
                          text=True, check=True)
    from debugsim.sim import registry
    plan = []
    for entry in json.loads(proc.stdout):
        sid = entry["id"]
        cause = registry.get(sid).draw_cause(0).id
        shown = subprocess.run(debugsim_cmd("show", sid, "--answers", "--json"), cwd=work,
                               capture_output=True, text=True, check=True)
        causes = {c["id"]: c for c in json.loads(shown.stdout)["causes"]}
        fixes = causes[cause]["resolved_by"]
        plan.append({"id": sid, "cause": cause, "fix": fixes[0] if fixes else None})
    return plan


def bench_run_check(table: Table, repeats: int, work: Path, sections) -> None:
    plan = scenario_plan(work)
    runs = {p["id"]: [] for p in plan}
    checks = {p["id"]: [] for p in plan}
    problems = {p["id"]: {"run": [], "check": []} for p in plan}
    for rep in range(repeats):                    # interleave scenarios to spread out noise
        for p in plan:
            sid = p["id"]
            if "run" in sections:
                out = work / f"run-{sid}-{rep}"
                seconds, proc = timed(debugsim_cmd("run", sid, "--seed", "0", "--out", str(out),
                                                   "--json"), work)
                record = "plan.json" if (out / "plan.json").exists() else "metrics.jsonl"
                missing = [f for f in (record, "summary.json", "config.json")
                           if not (out / f).exists()]
                if proc.returncode != 0 or missing:
                    problems[sid]["run"].append(f"rc={proc.returncode} missing={missing}")
                runs[sid].append(seconds)
                shutil.rmtree(out, ignore_errors=True)
            if "check" in sections and p["fix"]:
                seconds, proc = timed(debugsim_cmd("check", sid, "--seed", "0", "--cause",
                                                   p["cause"], "--fix", p["fix"], "--json"), work)
                if proc.returncode != 0:
                    problems[sid]["check"].append(f"rc={proc.returncode} (not passed)")
                checks[sid].append(seconds)
        log(f"  run/check repeat {rep + 1}/{repeats} done")
    for p in plan:
        sid = p["id"]
        if "run" in sections:
            bad = problems[sid]["run"]
            table.timing(f"run {sid}", runs[sid], RUN_TARGET_S,
                         f"cause {p['cause']}" + (f"; FAILED {bad[0]}" if bad else ""),
                         ok=not bad)
    for p in plan:
        sid = p["id"]
        if "check" not in sections:
            continue
        if not p["fix"]:
            table.add(f"check {sid}", "-", f"<= {CHECK_TARGET_S:g} s", "MISS",
                      f"no resolving fix listed for {p['cause']}")
            continue
        bad = problems[sid]["check"]
        table.timing(f"check {sid}", checks[sid], CHECK_TARGET_S,
                     f"--cause {p['cause']} --fix {p['fix']}"
                     + (f"; FAILED {bad[0]}" if bad else ""), ok=not bad)


# --- 4. instrumented loop vs bare PyTorch loop -----------------------------------------------

def bare_train(config):
    """What sim.loop.train does for `config`, minus callbacks, telemetry and the device tracker.

    Same seed, data stream, model, optimizer, learning-rate schedule, micro-batching, loss,
    backward, grad-norm measurement (with its .item() sync), clipping, step, zero_grad and the
    held-out evaluation; returns the per-step mean losses.
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

    def to(t):
        return None if t is None else t.to(config.device, copy=True)

    history = []
    for step in range(config.steps):
        lr = lr_at(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        for micro in range(config.grad_accum_steps):
            raw = stream.batch(step, micro)
            batch = Batch(raw.tokens.to(config.device, copy=True),
                          raw.targets.to(config.device, copy=True), to(raw.key_padding))
            with autocast_for(config):
                logits = model(batch.tokens, batch.key_padding)
                loss_sum, n_tokens = token_loss(logits, batch.targets)
                loss = loss_sum / n_tokens.clamp(min=1)
            losses.append(loss.detach())
            (loss / config.grad_accum_steps).backward()
        history.append(torch.stack(losses).mean().item())
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(
            torch.stack(torch._foreach_norm(grads))).item() if grads else 0.0
        finite = math.isfinite(grad_norm)
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if config.skip_nonfinite and not (finite and math.isfinite(history[-1])):
            pass
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == config.steps - 1 or (config.eval_every and (step + 1) % config.eval_every == 0):
            model.eval()
            with torch.no_grad():
                eb = stream.eval_batch()
                with autocast_for(config):
                    logits = model(eb.tokens.to(config.device), to(eb.key_padding))
                s, c = token_loss(logits, eb.targets.to(config.device))
                (s / c.clamp(min=1)).item()
            model.train()
    return history


def bench_loop(table: Table, repeats: int) -> None:
    import torch
    from debugsim.sim.config import TrainConfig
    from debugsim.sim.loop import train
    from debugsim.sim.telemetry import Recorder

    torch.set_num_threads(1)                       # as sim.runner.execute does
    base = TrainConfig()
    variants = {
        "bare": lambda: bare_train(dataclasses.replace(base, track_memory=False)),
        "telemetry": lambda: train(dataclasses.replace(base, track_memory=False), [Recorder()]),
        "telemetry+memory": lambda: train(dataclasses.replace(base, track_memory=True),
                                          [Recorder()]),
    }

    # Faithfulness: the bare loop must reproduce the instrumented run's losses exactly.
    recorder = Recorder()
    train(dataclasses.replace(base, track_memory=False), [recorder])      # also a warm-up
    bare_losses = bare_train(dataclasses.replace(base, track_memory=False))
    same = len(bare_losses) == len(recorder.records) and all(
        float(f"{b:.6g}") == r["loss"] for b, r in zip(bare_losses, recorder.records))
    variants["telemetry+memory"]()                                        # warm-up

    times = {name: [] for name in variants}
    names = list(variants)
    for rep in range(repeats):                     # interleaved, rotating the order
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
        log(f"  loop repeat {rep + 1}/{repeats} done")

    steps = base.steps
    for name in names:
        med = statistics.median(times[name])
        table.add(f"loop {name}: run time", f"{med:.3f} s", "-", "INFO",
                  f"{steps} steps, {1000 * med / steps:.1f} ms/step; {spread(times[name])}")
    for name, target in (("telemetry", LOOP_RATIO_TARGET), ("telemetry+memory", None)):
        ratios = [t / b for t, b in zip(times[name], times["bare"])]
        med = statistics.median(ratios)
        if target is None:
            result, target_text = "INFO", "- (no target)"
        else:
            result = "PASS" if med <= target and same else "MISS"
            target_text = f"<= {target:.2f}x"
        table.add(f"loop {name} / bare", f"{med:.3f}x", target_text, result,
                  f"paired ratios {spread(ratios)}; ratio of medians "
                  f"{statistics.median(times[name]) / statistics.median(times['bare']):.3f}x, "
                  f"of minimums {min(times[name]) / min(times['bare']):.3f}x")
    table.add("loop bare == train (losses)", "identical" if same else "DIFFERENT", "identical",
              "PASS" if same else "MISS",
              f"{len(bare_losses)} per-step losses vs Recorder records")


# --- main -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (5)")
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    sys.path.insert(0, str(ROOT))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print("debugsim benchmark")
    print(f"  cores usable: {cores} (os.cpu_count {os.cpu_count()}); load average at start: {load}")
    print(f"  torch {importlib.metadata.version('torch')}; python {platform.python_version()}; "
          f"{platform.system()} {platform.machine()}")
    print(f"  repeats: {repeats} (medians); sections: {', '.join(sections)}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] >= 0.5 * cores:
        print("  NOTE: the machine is busy (1-min load >= half the cores): timings are inflated "
              "and ratios noisy; rerun when idle before trusting a MISS")
    sys.stdout.flush()

    table = Table()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="debugsim-bench-") as tmp:
        work = Path(tmp)
        if "list" in sections:
            log("list ...")
            bench_list(table, repeats, work)
        if "run" in sections or "check" in sections:
            log("run/check ...")
            bench_run_check(table, repeats, work, sections)
        if "loop" in sections:
            log("loop ...")
            bench_loop(table, repeats)
    elapsed = time.perf_counter() - started
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print()
    print(table.render())
    misses = sum(1 for row in table.rows if row[3] == "MISS")
    passes = sum(1 for row in table.rows if row[3] == "PASS")
    print(f"\n{passes} PASS, {misses} MISS; benchmark took {elapsed:.0f} s; "
          f"load average at end: {load}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
