"""Time `plots.write_run_plots` in one process (not a pytest test: run it by hand).

    .venv/bin/python benchmarks/plots.py [--repeat 3] [--cache runs.pkl] [--against REV]

Trains a few small scenario runs once (or loads them from --cache), imports matplotlib,
then draws every run's plots `--repeat` times into a temporary folder and prints the time
per run and per PNG. The first pass is reported separately: it pays for the font cache.

`--against REV` also loads `sim/plots.py` as it was at git revision REV and alternates the two
versions run by run, so both see the same machine load; it prints the CPU time of each (the
minimum and the median over the repeats, summed over the runs) and their ratio.
"""
from __future__ import annotations

import argparse
import importlib.util
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    ("nan_loss", "fully_masked_row", ()), ("nan_loss", "lr_too_high", ()),
    ("nan_loss", "empty_label_division", ()), ("oom", "batch_too_large", ()),
    ("oom", "kept_graph", ()), ("oom", "eval_with_grad", ()), ("bad_lr", "lr_too_high", ()),
    ("bad_lr", "lr_too_low", ()), ("repetitive_decoding", "undertrained", ()),
]
ROOT = Path(__file__).resolve().parents[1]


def make_runs():
    from debugsim.sim import app
    runs = []
    for scenario_id, cause, fixes in CASES:
        result = app.simulate(scenario_id, 0, cause, fixes)
        result.out_dir = None
        runs.append(result)
    return runs


def plots_at(revision: str, folder: Path):
    """`sim/plots.py` at `revision`, imported as a module of the installed package."""
    source = subprocess.run(["git", "show", f"{revision}:sim/plots.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = folder / "plots_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("debugsim.sim._plots_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def compare(runs, baseline, current, repeat: int, folder: Path) -> None:
    times = {"baseline": [[] for _ in runs], "current": [[] for _ in runs]}
    versions = {"baseline": baseline, "current": current}
    for repeat_index in range(repeat):
        for i, result in enumerate(runs):
            order = ("baseline", "current") if (repeat_index + i) % 2 else ("current", "baseline")
            for name in order:
                start = time.process_time()
                versions[name].write_run_plots(result, folder / f"{name}-{repeat_index}-{i}")
                times[name][i].append(time.process_time() - start)
    total = {}
    for name, per_run in times.items():
        total[name] = (sum(min(t) for t in per_run), sum(statistics.median(t) for t in per_run))
        print(f"{name}: {total[name][0]:.3f} s (sum of minima), {total[name][1]:.3f} s "
              f"(sum of medians) of CPU time for {len(runs)} runs")
    print(f"current / baseline: {total['current'][0] / total['baseline'][0]:.2f} (minima), "
          f"{total['current'][1] / total['baseline'][1]:.2f} (medians)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="pickle of the runs (made if missing)")
    parser.add_argument("--against", metavar="REV", help="also time sim/plots.py at REV")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        runs = pickle.loads(args.cache.read_bytes())
    else:
        runs = make_runs()
        if args.cache:
            args.cache.write_bytes(pickle.dumps(runs))
    start = time.perf_counter()
    import matplotlib.figure  # noqa: F401  (what the first plot pays for)
    from matplotlib.backends import backend_agg  # noqa: F401
    print(f"import matplotlib: {time.perf_counter() - start:.3f} s")
    from debugsim.sim import plots
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        plots.write_run_plots(runs[0], Path(tmp) / "first")
        print(f"first write_run_plots (font cache): {time.perf_counter() - start:.3f} s")
        if args.against:
            baseline = plots_at(args.against, Path(tmp))
            baseline.write_run_plots(runs[0], Path(tmp) / "first-baseline")
            compare(runs, baseline, plots, args.repeat, Path(tmp))
            return
        per_run, pngs = [], 0
        for repeat in range(args.repeat):
            for i, result in enumerate(runs):
                start = time.perf_counter()
                paths = plots.write_run_plots(result, Path(tmp) / f"{repeat}-{i}")
                per_run.append(time.perf_counter() - start)
                pngs += len(paths)
    total = sum(per_run)
    print(f"{len(per_run)} calls, {pngs} PNGs: {statistics.mean(per_run):.3f} s per run "
          f"(median {statistics.median(per_run):.3f}), {total / pngs:.3f} s per PNG")


if __name__ == "__main__":
    main()
