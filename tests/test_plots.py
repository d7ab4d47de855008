"""Plots: non-empty PNGs for healthy, non-finite, out-of-memory and empty runs; every signal;
before/after overlays; the LR finder; and what the figures say (no-values notes, legends off
the data, the memory evidence, distinct before/after bars, no cause in any text)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from debugsim.sim import app, plots, signals
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
    cause = Cause("eval_grad", "eval with grad", Fault("", config={"eval_autograd": "graph_kept"}),
                  "", "")
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
    if name != "untracked":               # memory.png when the data has memory figures
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
    result = RunResult(app.prepare(scratch(config), 0), status, None, records,
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


# --------------------------------------------------------------------------------------------
# what the figures say
# --------------------------------------------------------------------------------------------

def texts(figure) -> list[str]:
    from matplotlib.text import Text
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def panel(figure, title_part):
    found = [ax for ax in figure.axes if title_part in ax.get_title()]
    assert len(found) == 1, [ax.get_title() for ax in figure.axes]
    return found[0]


def untracked(records, **config):
    """A synthetic run without memory figures (and no peak in its end record)."""
    result = synthetic([{**r, "mem_mib": None, "mem_peak_mib": None} for r in records], **config)
    result.end = {"peak_mib": None, "peak_breakdown_mib": None}
    return result


def all_nan_run():
    return untracked([record(i, loss=None, grad_norm=None, update_ratio=None, param_norm=None,
                             nonfinite=5, layer_grad_norm={"embed": None, "head": None})
                      for i in range(6)])


def test_all_nan_panels_say_no_finite_values():
    figure = plots.dashboard(all_nan_run())
    titles = {signals.BY_NAME[n].title: n for n in ("loss", "grad_norm", "update_ratio")}
    for title in titles:
        ax = panel(figure, title)
        notes = [t.get_text() for t in ax.texts]
        assert any(plots.NO_VALUES in note for note in notes), (title, notes)
        assert len(ax.get_yticks()) == 0          # no made-up y axis
        assert ax.get_xlim()[1] >= 5              # the step axis still spans the run
    ax = panel(figure, signals.BY_NAME["lr"].title)  # the learning rate is finite: drawn
    assert not any(plots.NO_VALUES in t.get_text() for t in ax.texts)
    assert plots.NO_VALUES in " ".join(texts(plots.signal(all_nan_run(), "loss")))


def test_untracked_memory_is_read_from_the_data_not_the_config(tmp_path):
    # the records have no memory figures: not tracked
    result = untracked([record(i) for i in range(4)])
    assert not plots.memory_tracked(result)
    figure = plots.dashboard(result)
    ax = panel(figure, signals.BY_NAME["update_ratio"].title)
    assert ax.get_yscale() == "log"
    assert not ax.patches                     # no "healthy" band that points the wrong way
    assert not any("memory" in ax.get_title() for ax in figure.axes)
    names = sorted(p.name for p in plots.write_run_plots(result, tmp_path))
    assert names == ["dashboard.png", "grad_norm.png", "loss.png"]
    tracked = synthetic([record(i) for i in range(4)])
    assert plots.memory_tracked(tracked)
    assert panel(plots.dashboard(tracked), "memory")
    from pathlib import Path
    source = (Path(plots.__file__)).read_text()
    assert "track_memory" not in source          # the field is leaving the config


def test_legends_sit_above_the_data(runs):
    figures = [plots.dashboard(runs[k]) for k in ("healthy", "nan", "oom_later")]
    figures += [plots.signal(runs["nan"], "layer_grad_norm"), plots.memory(runs["oom_later"]),
                plots.compare(runs["nan"], runs["healthy"], "loss"),
                plots.compare(runs["oom_later"], runs["one_step"], "mem_peak_mib")]
    checked = 0
    for figure in figures:
        figure.canvas.draw()
        width = figure.bbox.width
        for ax in figure.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, plot_area = legend.get_window_extent(), ax.get_window_extent()
            assert box.y0 >= plot_area.y1 - 1, (ax.get_title(), box, plot_area)
            assert box.x0 >= 0 and box.x1 <= width + 1, (ax.get_title(), box, width)
            title = ax.title.get_window_extent()
            assert title.y0 >= box.y1 - 1, (ax.get_title(), title, box)
            checked += 1
    assert checked >= 8


def test_dashboard_events_are_explained_once(runs):
    figure = plots.dashboard(runs["nan"])
    first = runs["nan"].summary["first_nonfinite_step"]
    assert [t for t in texts(figure) if t == f"first non-finite (step {first})"] == \
        [f"first non-finite (step {first})"]
    assert any(t.startswith("non-finite steps") for t in texts(figure))
    assert any(t.startswith("out of memory (step") for t in texts(plots.dashboard(runs["oom_later"])))


@pytest.fixture(scope="module")
def fits_12():
    """Within the oom_later run's 12 MiB budget: completes."""
    return run(memory_budget_mib=12.0, steps=4, eval_every=2)


def test_compare_memory_shows_budget_and_the_out_of_memory(runs, fits_12):
    before, after = runs["oom_later"], fits_12
    assert after.status == "completed"
    figure = plots.compare(before, after, "mem_peak_mib")
    ax = figure.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    budget = signals.BY_NAME["mem_peak_mib"].reference_label.format(value=12.0)
    assert budget in labels
    oom = [label for label in labels if label.startswith("before: out of memory at step 1")]
    assert oom and "needed" in oom[0]
    marks = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(before.end["peak_mib"])
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > max(12.0, before.end["peak_mib"])
    # a run that died before its first step still shows what it needed
    figure = plots.compare(runs["oom_at_0"], after, "mem_mib")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("before: out of memory at step 0") for label in labels)
    assert plots.NO_VALUES not in " ".join(texts(figure))
    # both died before a step: the crosses at step 0 on a whole-step axis, not +-0.05
    figure = plots.compare(runs["oom_at_0"], runs["oom_at_0"], "mem_peak_mib")
    low, high = figure.axes[0].get_xlim()
    assert low < 0 < high and high - low >= 1
    assert "neither run completed a step" in texts(plots.compare(runs["oom_at_0"],
                                                                 runs["oom_at_0"], "loss"))


def test_no_cause_in_any_text(runs, fits_12, tmp_path):
    result = runs["oom_later"]                    # injected cause: "eval_grad"
    assert result.cause_id == "eval_grad"
    figures = [plots.dashboard(result), plots.signal(result, "loss"), plots.memory(result),
               plots.compare(result, fits_12, "mem_peak_mib")]
    for figure in figures:
        assert not any("eval_grad" in t or "eval with grad" in t for t in texts(figure))
    assert not any("eval_grad" in p.name for p in plots.write_run_plots(result, tmp_path))


def test_returned_figure_has_its_own_canvas(runs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    a = plots.dashboard(runs["healthy"])
    b = plots.dashboard(runs["nan"])
    assert type(a.canvas) is FigureCanvasAgg
    a.canvas.draw()
    pixels = np.asarray(a.canvas.buffer_rgba()).copy()
    b.canvas.draw()
    assert np.array_equal(pixels, np.asarray(a.canvas.buffer_rgba()))


# --------------------------------------------------------------------------------------------
# the memory planner's bar chart
# --------------------------------------------------------------------------------------------

def test_before_after_bars_are_labelled_apart(tmp_path):
    from debugsim.sim.memplan.accounting import Strategy, plan_memory
    from debugsim.sim.memplan.chart import plot_plans, setting_differences
    off = plan_memory("llama-2-13b", Strategy(method="lora", batch=4, seq=4096))
    on = plan_memory("llama-2-13b", Strategy(method="lora", batch=4, seq=4096,
                                              checkpointing=True))
    smaller = plan_memory("llama-2-13b", Strategy(method="lora", batch=1, seq=4096))
    assert setting_differences([off, smaller]) == [["micro-batch 4"], ["micro-batch 1"]]
    figure = plot_plans([("before: lora", off), ("after: lora", smaller)], 40 * 10**9, None,
                        differences=True)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels[0] != labels[1]
    assert "micro-batch 4" in labels[0] and "micro-batch 1" in labels[1]
    figure = plot_plans([("before: lora", off), ("after: lora+ckpt", on)], 40 * 10**9, None,
                        differences=True)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert "checkpointing off" in labels[0] and "checkpointing on" in labels[1]
    figure = plot_plans([("before: lora", off), ("after: lora", off)], 40 * 10**9, None,
                        differences=True)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert all("(same settings)" in label for label in labels)
    path = plot_plans([("before: lora", off), ("after: lora", smaller)], 40 * 10**9,
                      str(tmp_path / "ba.png"), differences=True)
    assert path == str(tmp_path / "ba.png")
    assert_png(tmp_path / "ba.png")


def test_planner_before_after_chart(tmp_path, monkeypatch):
    before = app.simulate("oom_13b", 0, "checkpointing_not_enabled")
    after = app.simulate("oom_13b", 0, "checkpointing_not_enabled", ("micro_batch",))
    assert before.summary["plan"] == after.summary["plan"]        # the strategy labels alike
    path = before.prepared.engine.evidence_plot(before, after, tmp_path)
    assert_png(path)
    # bars are named by the job config: a repaired launcher is not written under a bar, only
    # the heights differ
    from debugsim.sim.memplan import chart
    drawn = []
    draw = chart.plot_plans
    monkeypatch.setattr(chart, "plot_plans", lambda bars, *a, **k: drawn.append(bars)
                        or draw(bars, *a, **k))
    fixed = app.simulate("oom_13b", 0, "checkpointing_not_enabled", ("enable_checkpointing",))
    assert_png(before.prepared.engine.evidence_plot(before, fixed, tmp_path / "fixed"))
    plans = [plan for _, plan in drawn[0]]
    assert chart.setting_differences(plans) == [[], []]
    assert plans[0].gpu["activations"] > 10 * plans[1].gpu["activations"]
