"""Plots of a run: a one-glance dashboard, single signals, before/after overlays, the LR finder.

matplotlib is imported inside the functions, never when this module is imported, so the CLI's
`list` and `--help` stay instant. Figures are drawn with `matplotlib.figure.Figure` on an Agg
canvas, so plotting works headless and never touches (or switches) pyplot's backend: a notebook
that already uses pyplot keeps its own. Every plotting function takes `path` (written as PNG and
returned) or `path=None` (the Figure is returned, e.g. for a notebook to display).

Missing values (None in the records: NaN/inf, or not measured) become gaps in the lines; the
steps with non-finite values are marked by a red rug along the bottom of every panel, the first
one by a vertical line, and an out-of-memory end by a dark red dash-dot line.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import signals as vocab

DPI = 90
NONFINITE_COLOR = "#d62728"
OOM_COLOR = "#7f0000"
BEFORE_COLOR, AFTER_COLOR = "#7f7f7f", "#1f77b4"



# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _finish(fig, path):
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _value(record: dict, name: str) -> float:
    if name.startswith("layer:"):
        value = record.get("layer_grad_norm", {}).get(name[6:])
    else:
        value = record.get(name)
    if value is None:
        return float("nan")
    if isinstance(value, bool):
        return float(value)
    return float(value)


def _series(result, name: str, steps=None):
    import numpy as np
    records = _window(result.records, steps)
    x = np.array([r["step"] for r in records], dtype=float)
    y = np.array([_value(r, name) for r in records], dtype=float)
    return x, y


def _window(records: list[dict], steps) -> list[dict]:
    """Records within `steps`: None (all), (start, end) inclusive, a range, or an iterable."""
    if steps is None:
        return records
    if isinstance(steps, range):
        wanted = set(steps)
        return [r for r in records if r["step"] in wanted]
    if isinstance(steps, tuple) and len(steps) == 2:
        lo, hi = steps
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        return [r for r in records if lo <= r["step"] <= hi]
    wanted = set(steps)
    return [r for r in records if r["step"] in wanted]


def _layers(result) -> list[str]:
    return list(result.records[0].get("layer_grad_norm", {})) if result.records else []


def memory_tracked(result) -> bool:
    """Whether the simulated device counted this run's memory (it does under a budget)."""
    return result.end.get("peak_mib") is not None


def nonfinite_steps(result) -> list[int]:
    from .result import nonfinite_steps as steps
    return steps(result)


def _xlim(ax, *results) -> None:
    """Very short runs: whole steps with some room, not matplotlib's +-0.05 around one point."""
    spans = [(r.records[0]["step"],
              r.records[-1]["step"] + (1 if r.status in ("oom", "error") else 0))
             for r in results if r.records]
    if not spans:
        return
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if hi - lo < 4:
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.set_xticks(range(lo, hi + 1))


def _mark_events(ax, result, steps=None, color=None, label: bool = True) -> None:
    """Rug of non-finite steps, a line at the first one, a line where the run ran out of
    memory or crashed."""
    bad = [s for s in nonfinite_steps(result)
           if steps is None or _window([{"step": s}], steps)]
    if bad:
        ax.plot(bad, [0.0] * len(bad), "|", color=color or NONFINITE_COLOR, markersize=9,
                mew=1.5, transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)
        ax.axvline(bad[0], color=color or NONFINITE_COLOR, linestyle=":", linewidth=1.4,
                   label=f"first non-finite (step {bad[0]})" if label else None)
    if result.status in ("oom", "error"):
        where = len(result.records) if not result.records else result.records[-1]["step"] + 1
        text = "out of memory" if result.status == "oom" else "crashed"
        ax.axvline(where, color=color or OOM_COLOR, linestyle="-.", linewidth=1.4,
                   label=f"{text} (step {where})" if label else None)


def _style(ax, title: str, ylabel: str, log, y=None) -> bool:
    """Title, labels, grid; `log` True (log when the finite positive values span more than
    8x: a narrower range reads better on a linear axis), "auto" (more than 50x, e.g. a loss
    that explodes) or False. Returns whether the y axis is log."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator
    ax.set_title(title, fontsize=10, y=1.0, pad=5)
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if not log or y is None:
        return False
    values = np.asarray(y, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if not len(positive) or positive.max() / positive.min() <= (50 if log == "auto" else 8):
        return False
    _log_y(ax, label_minor=positive.max() / positive.min() < 100)
    ax.set_ylabel(f"{ylabel} (log)", fontsize=9)
    return True


def _log_y(ax, label_minor: bool = False) -> None:
    """Log y axis with plain tick labels (0.01, 1, 100, 1e+06): the default 10^x labels need
    mathtext, whose first use costs ~0.5 s, a sixth of a whole run's budget."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_yscale("log", nonpositive="mask")      # a zero is a gap, not a spike to -inf
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=8))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # less than two decades: label the 2s and 5s as well, or there may be a single label
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}") if label_minor
                                 else NullFormatter())


def _line(ax, x, y, **kwargs):
    """A line with gaps at NaN; markers too when there are few points (or isolated ones)."""
    import numpy as np
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    if not finite.any():
        return None
    kwargs.setdefault("linewidth", 1.4)
    if len(x) <= 30:
        kwargs.setdefault("marker", "o")
        kwargs.setdefault("markersize", 3)
    line = ax.plot(x, y, **kwargs)[0]
    # points with no finite neighbour would be invisible as a line: draw them as dots
    lonely = finite & ~(np.r_[False, finite[:-1]] | np.r_[finite[1:], False])
    if lonely.any() and "marker" not in kwargs:
        ax.plot(x[lonely], y[lonely], "o", markersize=3, color=line.get_color())
    return line


def _empty(ax, result, what: str, detail: bool = True) -> None:
    from .result import end_note
    text = f"{what}\n{_wrap(end_note(result), 60)}" if detail else what
    ax.text(0.5, 0.5, text, ha="center", va="center",
            fontsize=9, transform=ax.transAxes, color="#444444")
    ax.set_xticks([])
    ax.set_yticks([])


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:4])


def _run_label(result) -> str:
    parts = [f"fix: {'+'.join(result.fix_ids)}" if result.fix_ids else "no fix"]
    if result.sets:
        parts.append(" ".join(f"{k}={v}" for k, v in result.sets.items()))
    return ", ".join(parts)


def _title(result) -> str:
    status = result.status
    if status == "completed" and nonfinite_steps(result):
        status = "completed with non-finite values"
    extra = f" · {'+'.join(result.fix_ids)}" if result.fix_ids else ""
    if result.sets:
        sets = " ".join(f"{k}={v}" for k, v in result.sets.items())
        extra += f" · {sets[:50]}"
    return f"{result.scenario_id} · seed {result.seed} · {status}{extra}"


def _draw_signal(ax, result, name: str, steps=None, color=None, label=None,
                 linestyle="-") -> bool:
    """Draw one signal on `ax`; returns whether anything was drawn."""
    import numpy as np
    if name == "layer_grad_norm":
        import matplotlib
        drawn = False
        cmap = matplotlib.colormaps["viridis"]
        layers = _layers(result)
        for i, layer in enumerate(layers):
            x, y = _series(result, f"layer:{layer}", steps)
            tone = cmap(i / max(len(layers) - 1, 1) * 0.9)
            prefix = f"{label}: " if label else ""
            drawn |= _line(ax, x, y, color=tone, label=f"{prefix}{layer}",
                           linestyle=linestyle) is not None
        return drawn
    x, y = _series(result, name, steps)
    if name == "nonfinite":
        if len(x):
            ax.bar(x, np.nan_to_num(y), width=0.8, color=color or NONFINITE_COLOR, label=label,
                   alpha=0.8)
        return bool(len(x))
    if name == "eval_loss":
        keep = np.isfinite(y)
        if keep.any():
            ax.plot(x[keep], y[keep], marker="o", color=color or "#ff7f0e", markersize=4,
                    label=label, linestyle=linestyle)
        return bool(keep.any())
    return _line(ax, x, y, color=color, label=label, linestyle=linestyle) is not None


def _check_name(result, name: str) -> None:
    if name in vocab.BY_NAME or (name.startswith("layer:") and name[6:] in _layers(result)):
        return
    if name in _layers(result):
        return
    from .config import did_you_mean
    options = [*vocab.names(), *(f"layer:{layer}" for layer in _layers(result))]
    raise ValueError(f"unknown signal '{name}'{did_you_mean(name, options)}; "
                     f"choose one of: {', '.join(options)}")


def _spec(name: str):
    spec = vocab.get(name)
    return spec.title, spec.unit, spec.log


# --------------------------------------------------------------------------------------------
# the plots
# --------------------------------------------------------------------------------------------

def dashboard(result, path=None):
    """2x2 overview: loss (+ held-out), global grad norm, learning rate, memory."""
    import numpy as np
    fig, axes = _figure(10.0, 6.6, 2, 2)
    (ax_loss, ax_grad), (ax_lr, ax_mem) = axes
    fig.suptitle(_title(result), fontsize=11)
    records = result.records
    if not records:
        for ax, what in ((ax_loss, "loss"), (ax_grad, "gradient norm"), (ax_lr, "learning rate")):
            ax.set_title(what, fontsize=10, y=1.0, pad=5)
            _empty(ax, result, "no steps recorded", detail=ax is ax_loss)
    else:
        _draw_signal(ax_loss, result, "loss", color="#1f77b4", label="train")
        _draw_signal(ax_loss, result, "eval_loss", label="held-out")
        _, y_loss = _series(result, "loss")
        _, y_eval = _series(result, "eval_loss")
        _style(ax_loss, "loss", "cross-entropy (nats / token)", "auto",
               np.concatenate([y_loss, y_eval]))
        x, y = _series(result, "grad_norm")
        _line(ax_grad, x, y, color="#2ca02c")
        _style(ax_grad, "global gradient norm (before clipping)", "L2 norm", True, y)
        if result.config.grad_clip > 0:
            ax_grad.axhline(result.config.grad_clip, color="#555555", linestyle="--",
                            linewidth=1, label=f"clip at {result.config.grad_clip:g}")
        x, y = _series(result, "lr")
        _line(ax_lr, x, y, color="#9467bd")
        if not _style(ax_lr, "learning rate", "learning rate", "auto", y):
            top = np.nanmax(y) if np.isfinite(y).any() else 1.0
            ax_lr.set_ylim(0, top * 1.15 if top > 0 else 1.0)
        for ax in (ax_loss, ax_grad, ax_lr):
            _mark_events(ax, result)
            _xlim(ax, result)
    _memory_panel(ax_mem, result)
    for ax in (ax_loss, ax_grad, ax_mem):
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.08, hspace=0.42, wspace=0.22)
    return _finish(fig, path)


def _memory_panel(ax, result) -> None:
    budget = result.config.memory_budget_mib
    if not memory_tracked(result):
        ax.set_title("memory", fontsize=10, y=1.0, pad=5)
        ax.text(0.5, 0.5, "memory not tracked in this run",
                ha="center", va="center", fontsize=9, transform=ax.transAxes, color="#444444")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if not result.records:
        _breakdown_bar(ax, result)
        return
    x, used = _series(result, "mem_mib")
    _, peak = _series(result, "mem_peak_mib")
    _line(ax, x, peak, color="#ff7f0e", label="peak during step")
    _line(ax, x, used, color="#1f77b4", label="in use after step")
    if budget > 0:
        ax.axhline(budget, color=OOM_COLOR, linestyle="--", linewidth=1.2,
                   label=f"budget {budget:g} MiB")
    if result.status == "oom" and result.end.get("peak_mib"):
        ax.plot([len(result.records)], [result.end["peak_mib"]], "x", color=OOM_COLOR,
                markersize=9, mew=2, label="in use at the OOM (incl. the failed request)")
    _mark_events(ax, result)
    _style(ax, "memory (simulated device)", "MiB (2^20 bytes)", False)
    _xlim(ax, result)
    ax.set_ylim(bottom=0)


def _breakdown_bar(ax, result) -> None:
    """For a run with no steps: the peak by category as one stacked bar against the budget."""
    breakdown = result.end.get("peak_breakdown_mib") or {}
    ax.set_title("memory at the peak (no steps completed)", fontsize=10, y=1.0, pad=5)
    left = 0.0
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    for (name, mib), color in zip(breakdown.items(), colors):
        if mib > 0:
            ax.barh([0], [mib], left=left, color=color, label=f"{name} {mib:.2f}")
            left += mib
    budget = result.config.memory_budget_mib
    if budget > 0:
        ax.axvline(budget, color=OOM_COLOR, linestyle="--", label=f"budget {budget:g} MiB")
    ax.set_yticks([])
    ax.set_xlabel("MiB (2^20 bytes)", fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    if left == 0:
        _empty(ax, result, "no memory recorded")


def signal(result, name: str, path=None, steps=None):
    """One signal over the steps: any record field, `layer_grad_norm` (a line per layer) or
    `layer:<name>`; `steps` limits the range ((start, end) inclusive, a range or a list)."""
    import numpy as np
    if name in _layers(result):
        name = f"layer:{name}"
    _check_name(result, name)
    title, ylabel, log = _spec(name)
    fig, axes = _figure(6.4, 3.7)
    ax = axes[0][0]
    records = _window(result.records, steps)
    if not records:
        ax.set_title(title, fontsize=10, y=1.0, pad=5)
        _empty(ax, result, "no steps recorded" if not result.records
               else f"no steps in {steps}")
    else:
        drawn = _draw_signal(ax, result, name, steps, color=None if name == "layer_grad_norm"
                             else "#1f77b4")
        values = [] if name == "layer_grad_norm" else _series(result, name, steps)[1]
        if name == "layer_grad_norm":
            values = np.concatenate([_series(result, f"layer:{layer}", steps)[1]
                                     for layer in _layers(result)] or [np.array([])])
        spec = vocab.get(name)
        if not _style(ax, title, ylabel, log, values) and spec.floor_zero:
            ax.set_ylim(bottom=0)
        reference = getattr(result.config, spec.reference, 0) if spec.reference else 0
        if reference > 0:
            ax.axhline(reference, color=OOM_COLOR if name.startswith("mem") else "#555555",
                       linestyle="--", linewidth=1.2,
                       label=spec.reference_label.format(value=reference))
        _mark_events(ax, result, steps)
        if steps is None:
            _xlim(ax, result)
        if not drawn:
            ax.text(0.5, 0.5, "no finite values in this range", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color=NONFINITE_COLOR)
            ax.set_yticks([])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.suptitle(_title(result), fontsize=8, color="#555555", y=0.995)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.86, bottom=0.14)
    return _finish(fig, path)


def compare(before, after, name: str, path=None, steps=None):
    """Two runs' signal overlaid: `before` (grey) and `after` (blue), e.g. for the grader."""
    import numpy as np
    if name in _layers(before) or name in _layers(after):
        name = f"layer:{name}"
    _check_name(before if before.records else after, name)
    title, ylabel, log = _spec(name)
    fig, axes = _figure(6.4, 3.7)
    ax = axes[0][0]
    values, drawn_any = [], False
    for result, color, which, style in ((before, BEFORE_COLOR, "before", "--"),
                                        (after, AFTER_COLOR, "after", "-")):
        label = f"{which} ({_run_label(result)})"
        if not result.records:
            ax.plot([], [], color=color, label=f"{label}: no steps ({result.status})")
            continue
        if name == "layer_grad_norm":
            drawn = _draw_signal(ax, result, name, steps, label=which, linestyle=style)
            values.extend(np.concatenate([_series(result, f"layer:{layer}", steps)[1]
                                          for layer in _layers(result)]))
        else:
            drawn = _draw_signal(ax, result, name, steps, color=color, label=label,
                                 linestyle="-")
            values.extend(_series(result, name, steps)[1])
        if not drawn:
            why = ("memory not tracked" if name.startswith("mem") and
                   not memory_tracked(result) else "no finite values")
            ax.plot([], [], color=color, label=f"{label}: {why}")
        drawn_any |= drawn
        _mark_events(ax, result, steps, color=color, label=False)
    if not drawn_any:
        ax.text(0.5, 0.5, "neither run has values to show", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="#444444")
        ax.set_yticks([])
    _style(ax, f"{title}: before vs after", ylabel, log, values)
    if steps is None:
        _xlim(ax, before, after)
    for result, color, which in ((before, BEFORE_COLOR, "before"), (after, AFTER_COLOR, "after")):
        bad = nonfinite_steps(result)
        notes = []
        if bad:
            notes.append(f"non-finite from step {bad[0]}")
        if result.status in ("oom", "error"):
            notes.append("out of memory" if result.status == "oom" else "crashed")
        if notes:
            ax.plot([], [], color=color, linestyle=":", label=f"{which}: {', '.join(notes)}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.suptitle(f"{after.scenario_id} · seed {after.seed}", fontsize=8, color="#555555",
                 y=0.995)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.86, bottom=0.14)
    return _finish(fig, path)


def memory(result, path=None):
    """Memory in use after each step and each step's peak, against the budget."""
    fig, axes = _figure(6.4, 3.7)
    ax = axes[0][0]
    _memory_panel(ax, result)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.suptitle(_title(result), fontsize=8, color="#555555", y=0.995)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.86, bottom=0.14)
    return _finish(fig, path)


def lr_finder(report: dict, path=None):
    """The LR range test (`sim.probes.lr_range_test`): loss vs learning rate, log x axis."""
    import numpy as np
    fig, axes = _figure(6.4, 3.7)
    ax = axes[0][0]
    lrs = np.asarray(report["lrs"], dtype=float)
    if len(lrs):
        ax.plot(lrs, report["losses"], color="#aaaaaa", linewidth=0.8, label="loss")
        ax.plot(lrs, report["smoothed"], color="#1f77b4", linewidth=1.6, label="smoothed loss")
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        smoothed = np.asarray(report["smoothed"], dtype=float)
        finite = smoothed[np.isfinite(smoothed)]
        if len(finite):
            # show the descent and the start of the blow-up, not the whole blow-up
            best, first = finite.min(), finite[0]
            top = min(finite.max(), first + 2 * (first - best) + 0.3)
            raw = np.asarray(report["losses"], dtype=float)
            low = min(best, np.nanmin(raw) if np.isfinite(raw).any() else best)
            ax.set_ylim(low - 0.08 * (top - low), top)
    if report.get("min_lr"):
        ax.axvline(report["min_lr"], color="#ff7f0e", linestyle=":", linewidth=1.2,
                   label=f"lowest loss at {report['min_lr']:.2g}")
    if report.get("suggested_lr"):
        ax.axvline(report["suggested_lr"], color="#2ca02c", linestyle="--", linewidth=1.4,
                   label=f"suggested (steepest) {report['suggested_lr']:.2g}")
    ax.set_title("learning-rate range test", fontsize=10, y=1.0, pad=5)
    ax.set_xlabel("learning rate (log)", fontsize=9)
    ax.set_ylabel("loss (nats / token)", fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if len(lrs):
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no steps in the sweep", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="#444444")
    fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.14)
    return _finish(fig, path)


def write_run_plots(result, out_dir=None) -> list[Path]:
    """plots/dashboard.png, loss.png, grad_norm.png (and memory.png when memory was tracked)
    under `out_dir` (default: the run's own folder); returns the paths written."""
    out_dir = Path(out_dir if out_dir is not None else result.out_dir)
    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [dashboard(result, folder / "dashboard.png"),
             signal(result, "loss", folder / "loss.png"),
             signal(result, "grad_norm", folder / "grad_norm.png")]
    if memory_tracked(result):
        paths.append(memory(result, folder / "memory.png"))
    return paths
