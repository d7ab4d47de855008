"""Plots: non-empty PNGs for healthy, non-finite, out-of-memory and empty runs; every signal;
before/after overlays; the LR finder."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from debugsim.sim import app, plots, signals
from debugsim.sim.team_code import GradEnabledEval
from debugsim.sim.scenario import Cause, Criterion, Fault, Scenario

PNG = b"\x89PNG\r\n\x1a\n"



def scratch(base, causes=()):
    return Scenario(id="plot-scratch", title="scratch", difficulty="easy", tags=(), story="",
                    base=base, causes=causes, fixes=(), criterion=Criterion(), debrief="",
                    interview_question="", resolves={})


def run(track_memory=True, **base):
    return app.simulate(scratch(base), 0, track_memory=track_memory)


def run_eval_with_grad(**base):
    """Training fits; the first evaluation (step 1) keeps a graph of a 256-row batch: OOM."""
    cause = Cause("eval_grad", "eval with grad", Fault("", callbacks=(GradEnabledEval,)), "", "")
    return app.simulate(scratch(base, (cause,)), 0, "eval_grad")


@pytest.fixture(scope="module")
def runs():
    return {
        "healthy": run(steps=8, eval_every=4, grad_clip=1.0, warmup_steps=2, schedule="cosine"),
        "nan": run(optimizer="sgd", lr=5.0, steps=12),          # non-finite from step 10
        "oom_at_0": run(memory_budget_mib=2.0),                  # no records at all
        "oom_later": run_eval_with_grad(memory_budget_mib=12.0, steps=4, eval_every=2,
                                        eval_batch_size=256),  # one step, then out of memory
        "one_step": run(steps=1),
        "untracked": run(steps=3, track_memory=False),
    }


def assert_png(path, min_bytes=4000):
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > min_bytes, path


def test_the_runs_cover_the_cases(runs):
    assert runs["nan"].summary["first_nonfinite_step"] is not None
    assert runs["oom_at_0"].status == "oom" and not runs["oom_at_0"].records
    assert runs["oom_later"].status == "oom" and runs["oom_later"].records


@pytest.mark.parametrize("name", ["healthy", "nan", "oom_at_0", "oom_later", "one_step",
                                  "untracked"])
def test_write_run_plots(runs, name, tmp_path):
    result = runs[name]
    start = time.perf_counter()
    paths = plots.write_run_plots(result, tmp_path)
    elapsed = time.perf_counter() - start
    names = sorted(p.name for p in paths)
    expected = ["dashboard.png", "grad_norm.png", "loss.png"]
    if plots.memory_tracked(result):
        expected.append("memory.png")
    assert names == sorted(expected)
    for path in paths:
        assert path.parent == tmp_path / "plots"
        assert_png(path)
    assert elapsed < 20          # ~0.3-0.8 s on an idle machine; generous for loaded CI


def test_write_run_plots_defaults_to_the_run_folder(tmp_path):
    result = app.simulate(scratch({"steps": 2}), 0, out=tmp_path / "run")
    paths = plots.write_run_plots(result)
    assert all(p.parent == tmp_path / "run" / "plots" for p in paths)


@pytest.mark.parametrize("name", sorted(signals.names()))
def test_signal_every_field(runs, name, tmp_path):
    for key in ("healthy", "nan"):
        path = plots.signal(runs[key], name, tmp_path / f"{key}-{name}.png")
        assert_png(path)


def test_signal_layers_ranges_and_errors(runs, tmp_path):
    assert_png(plots.signal(runs["nan"], "layer_grad_norm", tmp_path / "layers.png"))
    assert_png(plots.signal(runs["healthy"], "block0", tmp_path / "block0.png"))
    assert_png(plots.signal(runs["healthy"], "layer:head", tmp_path / "head.png", steps=(2, 5)))
    assert_png(plots.signal(runs["healthy"], "loss", tmp_path / "range.png", steps=range(3)))
    # a window with no finite values, and one with no steps at all
    assert_png(plots.signal(runs["nan"], "loss", tmp_path / "allnan.png", steps=(10, 11)))
    assert_png(plots.signal(runs["nan"], "loss", tmp_path / "outside.png", steps=(50, 60)))
    assert_png(plots.signal(runs["oom_at_0"], "grad_norm", tmp_path / "empty.png"))
    with pytest.raises(ValueError, match="did you mean 'grad_norm'"):
        plots.signal(runs["healthy"], "grad_nrom", tmp_path / "x.png")


def test_compare(runs, tmp_path):
    assert_png(plots.compare(runs["nan"], runs["healthy"], "loss", tmp_path / "loss.png"))
    assert_png(plots.compare(runs["nan"], runs["healthy"], "layer_grad_norm",
                             tmp_path / "layers.png"))
    assert_png(plots.compare(runs["oom_at_0"], runs["untracked"], "mem_peak_mib",
                             tmp_path / "mem.png"))
    assert_png(plots.compare(runs["oom_later"], runs["one_step"], "grad_norm",
                             tmp_path / "short.png"))


def test_memory_plot_and_figure_return(runs, tmp_path):
    assert_png(plots.memory(runs["oom_later"], tmp_path / "memory.png"))
    assert_png(plots.memory(runs["untracked"], tmp_path / "untracked.png"))
    figure = plots.dashboard(runs["healthy"])              # no path: the Figure itself
    assert figure.__class__.__name__ == "Figure" and len(figure.axes) == 4


def test_lr_finder_plot(tmp_path):
    lrs = 1e-5 * (1e6 ** (np.arange(40) / 39))
    losses = 2.8 - 0.3 * np.exp(-((np.log10(lrs) + 2) ** 2)) + np.where(lrs > 0.3, lrs * 5, 0)
    losses[-1] = math.nan
    report = {"lrs": lrs, "losses": losses, "smoothed": losses, "suggested_lr": 3e-3,
              "min_lr": 1e-2}
    assert_png(plots.lr_finder(report, tmp_path / "lr.png"))
    empty = {"lrs": np.array([]), "losses": np.array([]), "smoothed": np.array([])}
    assert_png(plots.lr_finder(empty, tmp_path / "empty.png"), min_bytes=1000)


def synthetic(records, status="completed", **config):
    """A RunResult from hand-written records (no training)."""
    from debugsim.sim.engines.training import summarize
    from debugsim.sim.result import RunResult
    prepared = app.prepare(scratch(config), 0)
    result = RunResult(prepared, status, None, records,
                       {"peak_mib": 1.0, "peak_breakdown_mib": {}}, {})
    result.summary = summarize(result)
    return result


def record(step, **values):
    base = {"step": step, "loss": 2.0, "grad_norm": 1.0, "param_norm": 10.0,
            "update_ratio": 0.01, "lr": 0.01, "nonfinite": 0, "updated": True, "mem_mib": 1.0,
            "mem_peak_mib": 2.0, "eval_loss": None, "loss_scale": None,
            "layer_grad_norm": {"embed": 0.1, "head": 0.9}}
    return {**base, **values}


def test_gaps_zeros_and_all_missing_values(tmp_path):
    nan_layers = {"embed": None, "head": None}
    result = synthetic([
        record(0, loss=None, grad_norm=None, nonfinite=3, layer_grad_norm=nan_layers),
        record(1, grad_norm=0.0),                     # a zero on a log axis: a gap, no crash
        record(2, loss=None, nonfinite=1),
        record(3, grad_norm=1e6, loss_scale=65536.0, eval_loss=2.5),
    ])
    for path in plots.write_run_plots(result, tmp_path):
        assert_png(path)
    for name in signals.names():
        assert_png(plots.signal(result, name, tmp_path / f"{name}.png"))
    every_missing = synthetic([record(i, **{k: None for k in (
        "loss", "grad_norm", "param_norm", "update_ratio", "mem_mib", "mem_peak_mib")},
        nonfinite=1, layer_grad_norm=nan_layers) for i in range(3)])
    for path in plots.write_run_plots(every_missing, tmp_path / "missing"):
        assert_png(path)


def test_plotting_imports_neither_pyplot_nor_torch(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    code = f"""
import sys
from debugsim.sim import engines, plots
from debugsim.sim.config import TrainConfig
from debugsim.sim.engines.base import Prepared
from debugsim.sim.incidents import bare
from debugsim.sim.result import RunResult
from debugsim.sim.scenario import Criterion, Scenario
rows = [{{"step": i, "loss": 2.0, "grad_norm": 1.0, "param_norm": 9.0, "update_ratio": 0.01,
         "lr": 0.01, "nonfinite": 0, "updated": True, "mem_mib": 1.0, "mem_peak_mib": 2.0,
         "eval_loss": None, "loss_scale": None, "layer_grad_norm": {{"embed": 0.5}}}}
        for i in range(3)]
scenario = Scenario(id="synthetic", title="", difficulty="easy", tags=(), story="", base={{}},
                    causes=(), fixes=(), criterion=Criterion(), debrief="",
                    interview_question="", resolves={{}})
prepared = Prepared(bare(scenario, 0), engines.get("training"), config=TrainConfig())
result = RunResult(prepared, "completed", None, rows,
                   {{"peak_mib": 2.0, "peak_breakdown_mib": {{}}}}, {{}})
plots.write_run_plots(result, {str(tmp_path)!r})
bad = [m for m in ("matplotlib.pyplot", "torch") if m in sys.modules]
sys.exit(f"imported {{bad}}" if bad else 0)
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plots" / "dashboard.png").exists()
