"""Time `plots.write_run_plots` in one process (not a pytest test: run it by hand).

    .venv/bin/python tests/bench_plots.py [--repeat 3] [--cache runs.pkl]

Trains a few small scenario runs once (or loads them from --cache), imports matplotlib,
then draws every run's plots `--repeat` times into a temporary folder and prints the time
per run and per PNG. The first pass is reported separately: it pays for the font cache.
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

CASES = [
    ("nan_loss", "fully_masked_row", ()), ("nan_loss", "lr_too_high", ()),
    ("nan_loss", "empty_label_division", ()), ("oom", "batch_too_large", ()),
    ("oom", "kept_graph", ()), ("oom", "eval_with_grad", ()), ("bad_lr", "lr_too_high", ()),
    ("bad_lr", "lr_too_low", ()), ("repetitive_decoding", "undertrained", ()),
]


def make_runs():
    from debugsim.sim import registry, runner
    runs = []
    for scenario_id, cause, fixes in CASES:
        result = runner.execute(registry.get(scenario_id), 0, cause, fixes)
        result.out_dir = None
        runs.append(result)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="pickle of the runs (made if missing)")
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
