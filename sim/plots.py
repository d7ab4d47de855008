"""Plots of a run: a one-glance dashboard, single signals, before/after overlays, the LR finder.

matplotlib is imported inside the functions, never when this module is imported, so the CLI's
`list` and `--help` stay instant. Figures are drawn with `matplotlib.figure.Figure` on an Agg
canvas, so plotting works headless and never touches (or switches) pyplot's backend: a notebook
that already uses pyplot keeps its own. Every plotting function takes `path` (written as PNG and
returned) or `path=None` (the Figure is returned, e.g. for a notebook to display).

Titles, axis labels, log scales and reference lines (the clip threshold, the memory budget)
come from the signal table, `sim.signals`. Missing values (None in the records: NaN/inf, or not
measured) become gaps in the lines; a panel with no finite value at all says so instead of
drawing an empty, made-up axis. The steps with non-finite values are marked by a red rug along
the bottom of every panel, the first one by a vertical line, and an out-of-memory end by a dark
red dash-dot line. Legends sit above the plotting area, never over the curves.

Drawing is kept cheap (a `debugsim run` draws three or four PNGs). Most of matplotlib's time
goes into tick marks and text, so: no layout engine (margins are computed from the legends'
measured heights), no mathtext (plain tick labels), titles and the step label at fixed places
(no extent measuring on each draw), a handful of ticks per axis and none outside the view, and
one renderer per image size shared by the figures written, so text is measured once.
"""
from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path

from . import signals as vocab

DPI = 90
NONFINITE_COLOR = "#d62728"
OOM_COLOR = "#7f0000"
BEFORE_COLOR, AFTER_COLOR = "#7f7f7f", "#1f77b4"
LEGEND_SIZE = 7
NO_VALUES = "no finite values"
STEP_LABEL_DROP = 20.5     # points from the axes' bottom to the x label: ticks, labels, a gap
NICE_STEPS = (1, 2, 2.5, 5, 10)      # tick spacings: 0.5, 1, 2.5, 5, 10 ..., never 0.8 or 3


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

_TEXT = threading.local()


@contextlib.contextmanager
def large_text(scale: float = 1.4):
    """Plots drawn inside it have text (and lines) `scale` times larger, at about the same
    pixel size: for a projector (`play --present`). The figure shrinks in inches and its dpi
    grows; the image is cut to what is drawn, so text past the margins stays in."""
    before = getattr(_TEXT, "scale", 1.0)
    _TEXT.scale = scale
    try:
        yield
    finally:
        _TEXT.scale = before


def _dpi() -> float:
    return DPI * getattr(_TEXT, "scale", 1.0)


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure
    scale = getattr(_TEXT, "scale", 1.0)
    fig = Figure(figsize=(width / scale, height / scale), dpi=_dpi())
    _canvas_class()(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


_RENDERERS = threading.local()


def _canvas_class():
    """An Agg canvas that shares one renderer per image size (per thread) with every figure
    written here: matplotlib caches text measurements per renderer, so a fresh renderer per
    figure measures every tick label again. `_finish` gives a figure that it returns (not
    written) a canvas of its own."""
    cls = getattr(_RENDERERS, "canvas", None)
    if cls is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

        class SharedRendererCanvas(FigureCanvasAgg):
            def get_renderer(self):
                width, height = self.get_width_height(physical=True)
                key = (width, height, self.figure.dpi)
                cache = _RENDERERS.__dict__.setdefault("by_size", {})
                if key not in cache:
                    cache[key] = RendererAgg(width, height, self.figure.dpi)
                self.renderer = cache[key]
                self._lastKey = key
                return self.renderer

        cls = _RENDERERS.canvas = SharedRendererCanvas
    return cls


def _finish(fig, path):
    if path is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(fig)              # its own pixels, whatever is drawn after it
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: encodes in about two thirds of the default level's time; ~10% larger
    # larger text (projector mode) may reach past the margins: the image grows to hold it
    tight = {"bbox_inches": "tight", "pad_inches": 0.08} if fig.dpi != DPI else {}
    fig.savefig(path, dpi=fig.dpi, format="png", pil_kwargs={"compress_level": 1}, **tight)
    return path


def _value(record: dict, name: str) -> float:
    if name.startswith("layer:"):
        value = record.get("layer_grad_norm", {}).get(name[6:])
    else:
        value = record.get(name)
    if value is None:
        return float("nan")
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


def nonfinite_steps(result) -> list[int]:
    from .result import nonfinite_steps as steps
    return steps(result)


def memory_tracked(result) -> bool:
    """Whether the run measured memory, read from the data: a step with a memory figure, or a
    peak in the end record (an out-of-memory at step 0 has no steps but has its peak)."""
    return (any(r.get("mem_mib") is not None for r in result.records)
            or (result.end or {}).get("peak_mib") is not None)


def _reference(result, spec) -> float:
    """The value of a signal's reference line (a config field), 0 when unset or unknown."""
    if not spec.reference:
        return 0.0
    value = getattr(result.config, spec.reference, 0)
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _draw_reference(ax, value: float, spec, color=None, prefix: str = "") -> None:
    if value > 0:
        memory = spec.name.startswith("mem")
        ax.axhline(value, color=color or (OOM_COLOR if memory else "#555555"), linestyle="--",
                   linewidth=1.2, label=prefix + spec.reference_label.format(value=value))


def _xlim(ax, *results) -> None:
    """Very short runs: whole steps with some room, not matplotlib's +-0.05 around one point.
    A run that failed before its first step counts as step 0 (where its failure is drawn)."""
    spans = [(r.records[0]["step"] if r.records else 0,
              _end_step(r) if r.status in ("oom", "error") else r.records[-1]["step"])
             for r in results if r.records or r.status in ("oom", "error")]
    if not spans:
        return
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if hi - lo < 4:
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.set_xticks(range(lo, hi + 1))


def _end_step(result) -> int:
    """Where an out-of-memory or a crash happened: the step after the last recorded one."""
    return result.records[-1]["step"] + 1 if result.records else 0


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
        where = _end_step(result)
        text = "out of memory" if result.status == "oom" else "crashed"
        ax.axvline(where, color=color or OOM_COLOR, linestyle="-.", linewidth=1.4,
                   label=f"{text} (step {where})" if label else None)


def _below(ax, points: float):
    """Axes coordinates shifted down by `points`."""
    from matplotlib.transforms import ScaledTranslation
    return ax.transAxes + ScaledTranslation(0, -points / 72, ax.figure.dpi_scale_trans)


_LOCATORS: dict = {}


def _in_view(name: str):
    """matplotlib's locator `name`, returning only the ticks inside the view: the stock ones
    add one beyond each end, and every tick costs a handful of artists even when not drawn."""
    if name not in _LOCATORS:
        from matplotlib import ticker

        class InView(getattr(ticker, name)):
            def __call__(self):
                lo, hi = sorted(self.axis.get_view_interval())
                slack = (hi - lo) * 1e-9
                return [v for v in super().__call__() if lo - slack <= v <= hi + slack]

        InView.__name__ = f"InView{name}"
        _LOCATORS[name] = InView
    return _LOCATORS[name]


def _style(ax, title: str, ylabel: str, log, y=None) -> bool:
    """Title, labels, grid; `log` True (log when the finite positive values span more than
    8x: a narrower range reads better on a linear axis), "auto" (more than 50x, e.g. a loss
    that explodes) or False. Returns whether the y axis is log."""
    import numpy as np
    MaxNLocator = _in_view("MaxNLocator")
    # y=1.0 and a fixed place for "step": otherwise each draw measures the tick labels'
    # extents to place them, about a sixth of the drawing time
    ax.set_title(title, fontsize=10, y=1.0, pad=5)
    ax.set_xlabel("step", fontsize=9, va="top")
    ax.xaxis.set_label_coords(0.5, 0, transform=_below(ax, STEP_LABEL_DROP))
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    # few ticks: each one is several artists, and ticks are most of the drawing time
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, steps=NICE_STEPS))
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if not log or y is None:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=NICE_STEPS))
        return False
    values = np.asarray(y, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    # a curve with values at or below 0 (a policy gradient's loss) would lose them on a log axis
    if not len(positive) or (values[np.isfinite(values)] <= 0).any() or \
            positive.max() / positive.min() <= (50 if log == "auto" else 8):
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=NICE_STEPS))
        return False
    _log_y(ax, span=positive.max() / positive.min())
    ax.set_ylabel(f"{ylabel} (log)", fontsize=9)
    return True


def _log_y(ax, span: float) -> None:
    """Log y axis with plain tick labels (0.01, 1, 100, 1e+06): the default 10^x labels need
    mathtext, whose first use costs ~0.5 s, a sixth of a whole run's budget. Minor ticks (2s
    and 5s, labelled) only over less than two decades, where they are the only labels."""
    from matplotlib.ticker import FuncFormatter, NullLocator
    LogLocator = _in_view("LogLocator")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_yscale("log", nonpositive="mask")      # a zero is a gap, not a spike to -inf
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=7))
    ax.yaxis.set_major_formatter(plain)
    if span < 100:
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=7))
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_locator(NullLocator())


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


def _note(ax, text: str, color: str = "#444444", ticks: bool = False) -> None:
    """A message in the middle of a panel; without `ticks`, no (meaningless) axis ticks."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes,
            color=color, wrap=False)
    if not ticks:
        ax.set_xticks([])
    ax.set_yticks([])


def _no_values(ax, result, steps=None, nonfinite: bool = True) -> None:
    """The panel of a signal with no finite value: say so; keep the step axis (the rug of
    non-finite steps reads against it) over all the steps, drop the made-up y axis."""
    records = _window(result.records, steps)
    bad = sum(1 for s in nonfinite_steps(result) if steps is None or _window([{"step": s}], steps))
    detail = f"\nnon-finite at {bad} of {len(records)} steps" if bad and nonfinite else ""
    _note(ax, NO_VALUES + detail, color=NONFINITE_COLOR, ticks=True)
    _all_steps(ax, result, steps)


def _all_steps(ax, result, steps=None) -> None:
    """An x axis over every step of the window, for a panel with no line to set it."""
    records = _window(result.records, steps)
    if records:
        lo, hi = records[0]["step"], records[-1]["step"]
        if steps is None and result.status in ("oom", "error"):
            hi += 1
        pad = max(0.5, 0.03 * (hi - lo))
        ax.set_xlim(lo - pad, hi + pad)


def _empty(ax, result, what: str, detail: bool = True) -> None:
    from .result import end_note
    _note(ax, f"{what}\n{_wrap(end_note(result), 60)}" if detail else what)


def _wrap(text: str, width: int, lines: int = 4) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:lines])


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


def _legend(ax) -> float:
    """The axes' legend above its plotting area, under its title, in as many columns as fit
    the axes' width (the figure's left and right margins must be final); the title moves up
    to make room. Returns the height, in points, that the title and legend need above the
    axes, for the caller to size the margins."""
    title_height = 1.25 * ax.title.get_fontsize()
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return title_height + 5
    from matplotlib.font_manager import FontProperties
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=LEGEND_SIZE)
    pixels = fig.dpi / 72.0
    width = ax.get_position().width * fig.get_figwidth() * fig.dpi
    handle = (1.6 + 0.5 + 0.2) * LEGEND_SIZE * pixels      # handle, its pad, the border pad
    gap = 1.2 * LEGEND_SIZE * pixels                       # column spacing

    def measure(label):
        return max(renderer.get_text_width_height_descent(line, prop, ismath=False)[0]
                   for line in label.split("\n"))

    widths = [measure(label) for label in labels]
    for i, (label, wide) in enumerate(zip(labels, widths)):
        if wide + handle > width:        # a very long label (e.g. many --set values): wrap it
            labels[i] = _wrap(label, int(len(label) * (width - handle) / wide * 0.95), lines=3)
            widths[i] = measure(labels[i])
    ncol = 1
    for cols in range(len(labels), 0, -1):
        # as matplotlib fills columns: the first n % cols ones get an extra entry
        sizes = [len(labels) // cols + (i < len(labels) % cols) for i in range(cols)]
        starts = [sum(sizes[:i]) for i in range(cols)]
        columns = [widths[a:a + n] for a, n in zip(starts, sizes) if n]
        if sum(max(c) + handle for c in columns) + gap * (len(columns) - 1) <= width:
            ncol = cols
            break
    legend = ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                       ncol=ncol, fontsize=LEGEND_SIZE, frameon=False, borderaxespad=0.1,
                       borderpad=0.2, handlelength=1.6, handletextpad=0.5, columnspacing=1.2,
                       labelspacing=0.3)
    height = legend.get_window_extent(renderer).height / pixels
    ax.set_title(ax.get_title(), fontsize=ax.title.get_fontsize(), y=1.0, pad=height + 3)
    return height + 3 + title_height


def _fit_single(fig, ax, suptitle: bool = True) -> None:
    """Margins of a one-axes figure: room above for the legend, the title (and suptitle)."""
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.13, top=0.8)
    above = _legend(ax) + (16 if suptitle else 6)
    fig.subplots_adjust(top=1 - above / (fig.get_figheight() * 72))


def _draw_signal(ax, result, name: str, steps=None, color=None, label=None,
                 linestyle="-", zorder=2) -> bool:
    """Draw one signal on `ax`; returns whether anything was drawn."""
    import numpy as np
    spec = vocab.get(name)
    if spec.kind == "layers":
        import matplotlib
        drawn = False
        cmap = matplotlib.colormaps["viridis"]
        layers = _layers(result)
        for i, layer in enumerate(layers):
            x, y = _series(result, f"layer:{layer}", steps)
            tone = cmap(i / max(len(layers) - 1, 1) * 0.9)
            prefix = f"{label}: " if label else ""
            drawn |= _line(ax, x, y, color=tone, label=f"{prefix}{layer}",
                           linestyle=linestyle, zorder=zorder) is not None
        return drawn
    x, y = _series(result, name, steps)
    if spec.kind == "bar":
        if len(x):
            ax.bar(x, np.nan_to_num(y), width=0.8, color=color or NONFINITE_COLOR, label=label,
                   alpha=0.8)
        return bool(len(x))
    if spec.kind == "points":
        keep = np.isfinite(y)
        if keep.any():
            ax.plot(x[keep], y[keep], marker="o", color=color or "#ff7f0e", markersize=4,
                    label=label, linestyle=linestyle, zorder=zorder)
        return bool(keep.any())
    return _line(ax, x, y, color=color, label=label, linestyle=linestyle,
                 zorder=zorder) is not None


def _values(result, name: str, steps=None):
    """Every finite-or-not value a panel of `name` shows (all layers for `layer_grad_norm`)."""
    import numpy as np
    if vocab.get(name).kind == "layers":
        return np.concatenate([_series(result, f"layer:{layer}", steps)[1]
                               for layer in _layers(result)] or [np.array([])])
    return _series(result, name, steps)[1]


def _check_name(result, name: str) -> None:
    if name in vocab.BY_NAME or (name.startswith("layer:") and name[6:] in _layers(result)):
        return
    if name in _layers(result):
        return
    from .config import did_you_mean
    options = [*vocab.names(), *(f"layer:{layer}" for layer in _layers(result))]
    raise ValueError(f"unknown signal '{name}'{did_you_mean(name, options)}; "
                     f"choose one of: {', '.join(options)}")


def _unit(result, spec) -> str:
    """The signal's unit; a reward model's or DPO's loss is per pair, a policy gradient's is
    a surrogate per answer."""
    config = getattr(result, "config", None)
    if spec.name in ("loss", "eval_loss") and getattr(config, "model", "") == "rlhf":
        return "policy-gradient loss (-advantage * log pi / answer)"
    if spec.name in ("loss", "eval_loss") and getattr(config, "data", "") == "preferences":
        return "DPO loss (nats / pair)" if config.model == "dpo" else "ranking loss (nats / pair)"
    return spec.unit


def _spec(name: str):
    spec = vocab.get(name)
    return spec.title, spec.unit, spec.log


# --------------------------------------------------------------------------------------------
# panels
# --------------------------------------------------------------------------------------------

def _panel(ax, result, name: str, steps=None, color=None, title: str | None = None,
           events: bool = True) -> bool:
    """One signal on `ax` with its title, unit, scale and reference line from the signal
    table, the run's events, and a 'no finite values' note when there is nothing to draw."""
    import numpy as np
    spec = vocab.get(name)
    if name == "update_ratio":
        return _update_ratio_panel(ax, result, steps, color=color, events=events)
    drawn = _draw_signal(ax, result, name, steps, color=color)
    values = _values(result, name, steps)
    floor = entropy_floor(result) if drawn and name in ("loss", "eval_loss") else None
    if floor is not None:
        values = np.append(values, floor)
        _draw_floor(ax, floor)
    log = _style(ax, title or spec.title, _unit(result, spec), spec.log if drawn else False,
                 values)
    if not drawn and name.startswith("mem") and not memory_tracked(result):
        _note(ax, "memory was not tracked in this run", ticks=True)
        _all_steps(ax, result, steps)
    elif not drawn:
        _no_values(ax, result, steps, nonfinite=spec.every_step)
    else:
        reference = _reference(result, spec)
        _draw_reference(ax, reference, spec)
        if spec.floor_zero and not log:
            finite = values[np.isfinite(values)]
            top = max(finite.max() if len(finite) else 0.0, reference)
            ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
    _mark_events(ax, result, steps, label=events)
    if steps is None:
        _xlim(ax, result)
    return drawn


def _loss_panel(ax, result, events: bool = True) -> None:
    """Training loss and, where measured, the held-out loss on one axis."""
    import numpy as np
    loss, held = vocab.get("loss"), vocab.get("eval_loss")
    held_values = _series(result, "eval_loss")[1]
    with_held = bool(np.isfinite(held_values).any())      # else the title says it all
    drawn = _draw_signal(ax, result, "loss", color="#1f77b4",
                         label=loss.title if with_held else None)
    held_drawn = _draw_signal(ax, result, "eval_loss", label=held.title)
    values = np.concatenate([_series(result, "loss")[1], held_values])
    floor = entropy_floor(result) if drawn or held_drawn else None
    if floor is not None:
        values = np.append(values, floor)
    title = f"{loss.title} and {held.title}" if held_drawn else loss.title
    _style(ax, title, _unit(result, loss), loss.log if drawn or held_drawn else False, values)
    if not (drawn or held_drawn):
        _no_values(ax, result)
    if floor is not None:
        _draw_floor(ax, floor)
    _mark_events(ax, result, label=events)
    _xlim(ax, result)


def entropy_floor(result) -> float | None:
    """The loss no model can beat on average on the scenario's data (the floor of its
    criterion's baselines, copied from `sim.data.baselines`), or None where it declares none."""
    scenario = getattr(getattr(result, "prepared", None), "scenario", None)
    baselines = getattr(getattr(scenario, "criterion", None), "baselines", None)
    return baselines[0] if baselines else None


def _draw_floor(ax, floor: float) -> None:
    ax.axhline(floor, color="#555555", linestyle=":", linewidth=1.2,
               label=f"entropy floor {floor:.3f}")


def _update_ratio_panel(ax, result, steps=None, color="#8c564b", events: bool = True) -> bool:
    """The update/param ratio on a log axis."""
    import numpy as np
    spec = vocab.get("update_ratio")
    drawn = _draw_signal(ax, result, spec.name, steps, color=color)
    _style(ax, spec.title, spec.unit, False)
    if not drawn:
        _no_values(ax, result, steps, nonfinite=spec.every_step)
    else:
        # no "healthy" band: on these tiny models the textbook 1e-3 rule points the wrong way
        # (healthy runs sit above it, a too-low lr inside it); the learner reads the curve
        values = _values(result, spec.name, steps)
        values = values[np.isfinite(values) & (values > 0)]
        if len(values):
            bottom, top = values.min() / 2, values.max() * 2
            _log_y(ax, top / bottom)
            ax.set_ylim(bottom, top)
            ax.set_ylabel(f"{spec.unit} (log)", fontsize=9)
    _mark_events(ax, result, steps, label=events)
    if steps is None:
        _xlim(ax, result)
    return drawn


def _memory_panel(ax, result, events: bool = True) -> None:
    used_spec, peak_spec = vocab.get("mem_mib"), vocab.get("mem_peak_mib")
    if not memory_tracked(result):
        ax.set_title("memory", fontsize=10, y=1.0, pad=5)
        _note(ax, "memory was not tracked in this run")
        return
    if not result.records:
        _breakdown_bar(ax, result)
        return
    import numpy as np
    x, used = _series(result, used_spec.name)
    _, peak = _series(result, peak_spec.name)
    drawn = _line(ax, x, peak, color="#ff7f0e", label=peak_spec.title) is not None
    drawn |= _line(ax, x, used, color="#1f77b4", label=used_spec.title) is not None
    _style(ax, "memory (simulated device)", used_spec.unit, False)
    budget = _reference(result, used_spec)
    _draw_reference(ax, budget, used_spec)
    oom_peak = result.end.get("peak_mib") if result.status == "oom" else None
    if oom_peak:
        ax.plot([_end_step(result)], [oom_peak], "x", color=OOM_COLOR, markersize=9, mew=2,
                label=f"needed at the OOM: {oom_peak:.2f} MiB")
    if not drawn and not oom_peak:
        _no_values(ax, result, nonfinite=False)
    else:
        finite = np.concatenate([used, peak, [budget, oom_peak or 0.0]])
        finite = finite[np.isfinite(finite)]
        ax.set_ylim(0, finite.max() * 1.12 if len(finite) and finite.max() > 0 else 1.0)
    _mark_events(ax, result, label=events)
    _xlim(ax, result)


def _breakdown_bar(ax, result) -> None:
    """For a run with no steps: the peak by category as one stacked bar against the budget."""
    breakdown = result.end.get("peak_breakdown_mib") or {}
    spec = vocab.get("mem_peak_mib")
    where = "at the out-of-memory" if result.status == "oom" else "at the peak"
    ax.set_title(f"memory by category {where}", fontsize=10, y=1.0, pad=5)
    left = 0.0
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    for (name, mib), color in zip(breakdown.items(), colors):
        if mib > 0:
            ax.barh([0], [mib], left=left, color=color, label=f"{name} {mib:.2f} MiB", height=0.6)
            left += mib
    budget = _reference(result, spec)
    if budget > 0:
        ax.axvline(budget, color=OOM_COLOR, linestyle="--", linewidth=1.4,
                   label=spec.reference_label.format(value=budget))
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlabel(spec.unit, fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
    if left == 0:
        _empty(ax, result, "no memory recorded")
    else:
        ax.set_xlim(0, max(left, budget) * 1.08)


# --------------------------------------------------------------------------------------------
# the plots
# --------------------------------------------------------------------------------------------

def dashboard(result, path=None):
    """2x2 overview: loss (+ held-out), global grad norm, learning rate, and memory when the run
    measured it, else the update/param ratio; for an RLHF run, the proxy reward, the KL, the
    gold reward and the lr. A run with no steps gets how it ended and, if measured, the
    memory at the end by category. The events (non-finite steps, the end of a
    run that ran out of memory) are explained once, under the title, not in every panel."""
    if not result.records:
        return _dashboard_no_steps(result, path)
    fig, axes = _figure(10.0, 7.0, 2, 2)
    (ax_loss, ax_grad), (ax_lr, ax_last) = axes
    fig.suptitle(_title(result), fontsize=11, y=0.99)
    if any(r.get("reward") is not None for r in result.records):
        # RLHF: the loss is a policy-gradient surrogate (its level means little); what tells
        # runs apart is the proxy reward against the gold one, the KL the penalty holds back,
        # and the step size (`plot loss` still draws the loss)
        for ax, name, color in ((ax_loss, "reward", "#1f77b4"), (ax_grad, "kl", "#d62728"),
                                (ax_lr, "gold_reward", "#2ca02c"), (ax_last, "lr", "#9467bd")):
            _panel(ax, result, name, color=color, events=False)
    else:
        _loss_panel(ax_loss, result, events=False)
        _panel(ax_grad, result, "grad_norm", color="#2ca02c", events=False)
        _panel(ax_lr, result, "lr", color="#9467bd", events=False)
        if memory_tracked(result):
            _memory_panel(ax_last, result, events=False)
        else:
            # Without memory figures the fourth panel shows the update/param ratio: the step
            # size the optimizer actually took, relative to the weights. Learning-rate trouble
            # is the most common training failure, and this is where it shows as a number
            # with a known healthy range (~1e-3): far above it the run is about to diverge
            # (NaN next), far below it the run barely learns. The held-out loss is already on
            # the loss panel.
            _update_ratio_panel(ax_last, result, events=False)
    height = fig.get_figheight() * 72
    title_height = 24
    events = _event_handles(result)
    if events:
        fig.legend(handles=events, loc="upper center", ncol=len(events), frameon=False,
                   fontsize=LEGEND_SIZE + 1, bbox_to_anchor=(0.5, 1 - title_height / height),
                   borderaxespad=0, borderpad=0.2, handlelength=2.2, columnspacing=2.0)
        title_height += 15
    bottom = 0.07
    fig.subplots_adjust(left=0.08, right=0.98, bottom=bottom, top=0.85, wspace=0.22, hspace=0.5)
    above = [_legend(ax) for ax in (ax_loss, ax_grad, ax_lr, ax_last)]
    top = 1 - (max(above[:2]) + title_height + 2) / height
    gap = max(above[2:]) + 34          # the top row's step axis, then the bottom row's title
    axes_height = ((top - bottom) * height - gap) / 2
    fig.subplots_adjust(top=top, hspace=gap / axes_height)
    return _finish(fig, path)


def _event_handles(result) -> list:
    """Legend handles for the marks `_mark_events` draws: the rug, the first non-finite step,
    the out-of-memory or crash."""
    from matplotlib.lines import Line2D
    handles = []
    bad = nonfinite_steps(result)
    if bad:
        handles.append(Line2D([], [], color=NONFINITE_COLOR, marker="|", linestyle="none",
                              markersize=9, mew=1.5, label=f"non-finite steps ({len(bad)} of {len(result.records)})"))
        handles.append(Line2D([], [], color=NONFINITE_COLOR, linestyle=":", linewidth=1.4,
                              label=f"first non-finite (step {bad[0]})"))
    if result.status in ("oom", "error"):
        text = "out of memory" if result.status == "oom" else "crashed"
        handles.append(Line2D([], [], color=OOM_COLOR, linestyle="-.", linewidth=1.4,
                              label=f"{text} (step {_end_step(result)})"))
    return handles


def _dashboard_no_steps(result, path):
    """No step completed: how the run ended, beside the memory at the end if measured."""
    tracked = memory_tracked(result)
    fig, axes = _figure(10.0 if tracked else 6.4, 3.6, 1, 2 if tracked else 1)
    fig.suptitle(_title(result), fontsize=11, y=0.99)
    ax = axes[0][0]
    ax.set_title("no steps recorded", fontsize=10, y=1.0, pad=5)
    from .result import end_note
    _note(ax, _wrap(end_note(result), 48 if tracked else 70, lines=8))
    if tracked:
        _breakdown_bar(axes[0][1], result)
    fig.subplots_adjust(left=0.03, right=0.98, bottom=0.16, top=0.8, wspace=0.08)
    above = max(_legend(a) for a in fig.axes)
    fig.subplots_adjust(top=1 - (above + 26) / (fig.get_figheight() * 72))
    return _finish(fig, path)


def signal(result, name: str, path=None, steps=None):
    """One signal over the steps: any record field, `layer_grad_norm` (a line per layer) or
    `layer:<name>`; `steps` limits the range ((start, end) inclusive, a range or a list)."""
    if name in _layers(result):
        name = f"layer:{name}"
    _check_name(result, name)
    spec = vocab.get(name)
    fig, axes = _figure(6.4, 3.9)
    ax = axes[0][0]
    if not _window(result.records, steps):
        ax.set_title(spec.title, fontsize=10, y=1.0, pad=5)
        _empty(ax, result, "no steps recorded" if not result.records
               else f"no steps in {steps}")
    else:
        _panel(ax, result, name, steps, color=None if spec.kind == "layers" else "#1f77b4")
    fig.suptitle(_title(result), fontsize=8, color="#555555", y=0.99)
    _fit_single(fig, ax)
    return _finish(fig, path)


def compare(before, after, name: str, path=None, steps=None):
    """Two runs' signal overlaid: `before` (grey) and `after` (blue), e.g. for the grader.
    For a memory signal: both runs against the budget, and where a run ran out of memory,
    a cross at the memory it needed then (also for a run that died before its first step)."""
    import numpy as np
    if name in _layers(before) or name in _layers(after):
        name = f"layer:{name}"
    _check_name(before if before.records else after, name)
    spec = vocab.get(name)
    memory = name in ("mem_mib", "mem_peak_mib")
    fig, axes = _figure(6.4, 4.0)
    ax = axes[0][0]
    runs = ((before, BEFORE_COLOR, "before", "--", "x"), (after, AFTER_COLOR, "after", "-", "+"))
    values, drawn_any, oom_peaks = [], False, {}
    for result, color, which, style, _ in runs:
        label = f"{which} ({_run_label(result)})"
        if memory and result.status == "oom" and result.end.get("peak_mib"):
            oom_peaks[which] = result.end["peak_mib"]
        if not result.records:
            if which not in oom_peaks:
                ax.plot([], [], color=color, label=f"{label}: no steps ({result.status})")
            continue
        if spec.kind == "layers":
            drawn = _draw_signal(ax, result, name, steps, label=which, linestyle=style)
        else:
            # the before run dashed and on top: where the fix changed nothing, both show
            drawn = _draw_signal(ax, result, name, steps, color=color, label=label,
                                 linestyle=style, zorder=2.5 if which == "before" else 2)
        values.extend(_values(result, name, steps))
        if not drawn:
            why = ("memory not tracked" if memory and not memory_tracked(result)
                   else NO_VALUES)
            ax.plot([], [], color=color, label=f"{label}: {why}")
        drawn_any |= drawn
        _mark_events(ax, result, steps, color=color, label=False)
    for result, _, which, _, mark in runs:
        if which in oom_peaks:
            # the evidence of an out-of-memory: what the failing step needed, against the budget
            peak, step = oom_peaks[which], _end_step(result)
            ax.plot([step], [peak], mark, color=OOM_COLOR, markersize=10, mew=2.2, zorder=6,
                    label=f"{which}: out of memory at step {step}, needed {peak:.2f} MiB")
            values.append(peak)
            drawn_any = True
    floor = entropy_floor(after) if drawn_any and name in ("loss", "eval_loss") else None
    if floor is not None:
        values.append(floor)
        _draw_floor(ax, floor)
    values = np.asarray(values, dtype=float)
    log = _style(ax, f"{spec.title}: before vs after", _unit(after, spec),
                 spec.log if drawn_any else False, values)
    references = {which: _reference(result, spec) for result, _, which, _, _ in runs}
    if drawn_any and references["before"] == references["after"]:
        _draw_reference(ax, references["after"], spec)
    elif drawn_any:
        for result, color, which, _, _ in runs:
            _draw_reference(ax, references[which], spec, color=color, prefix=f"{which}: ")
    if not drawn_any:
        longer = max((before, after), key=lambda r: len(r.records))
        _note(ax, "neither run has values to show" if longer.records else
              "neither run completed a step", ticks=bool(longer.records))
        _all_steps(ax, longer, steps)
    elif spec.floor_zero and not log:
        finite = values[np.isfinite(values)]
        top = max([*finite, *references.values(), 0.0])
        ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
    if steps is None:
        _xlim(ax, before, after)
    for result, color, which, _, _ in runs:
        bad = nonfinite_steps(result)
        notes = [f"non-finite from step {bad[0]}"] if bad else []
        if result.status == "error" or (result.status == "oom" and not memory):
            notes.append("out of memory" if result.status == "oom" else "crashed")
        if notes:
            ax.plot([], [], color=color, linestyle=":", label=f"{which}: {', '.join(notes)}")
    fig.suptitle(f"{after.scenario_id} · seed {after.seed}", fontsize=8, color="#555555",
                 y=0.99)
    _fit_single(fig, ax)
    return _finish(fig, path)


def memory(result, path=None):
    """Memory in use after each step and each step's peak, against the budget."""
    fig, axes = _figure(6.4, 3.9)
    ax = axes[0][0]
    _memory_panel(ax, result)
    fig.suptitle(_title(result), fontsize=8, color="#555555", y=0.99)
    _fit_single(fig, ax)
    return _finish(fig, path)


def lr_finder(report: dict, path=None):
    """The LR range test (`sim.probes.lr_range_test`): loss vs learning rate, log x axis."""
    import numpy as np
    fig, axes = _figure(6.4, 3.9)
    ax = axes[0][0]
    lrs = np.asarray(report["lrs"], dtype=float)
    if len(lrs):
        ax.plot(lrs, report["losses"], color="#aaaaaa", linewidth=0.8, label="loss")
        ax.plot(lrs, report["smoothed"], color="#1f77b4", linewidth=1.6, label="smoothed loss")
        from matplotlib.ticker import FuncFormatter, NullFormatter
        LogLocator = _in_view("LogLocator")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
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
    ax.set_ylabel(vocab.get("loss").unit, fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    if not len(lrs):
        _note(ax, "no steps in the sweep", ticks=True)
    _fit_single(fig, ax, suptitle=False)
    return _finish(fig, path)


def write_run_plots(result, out_dir=None) -> list[Path]:
    """plots/dashboard.png, loss.png, grad_norm.png (and memory.png when the run measured
    memory) under `out_dir` (default: the run's own folder); returns the paths written."""
    out_dir = Path(out_dir if out_dir is not None else result.out_dir)
    folder = out_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [dashboard(result, folder / "dashboard.png"),
             signal(result, "loss", folder / "loss.png"),
             signal(result, "grad_norm", folder / "grad_norm.png")]
    if memory_tracked(result):
        paths.append(memory(result, folder / "memory.png"))
    return paths


def reward_vs_length(held: dict, path=None):
    """A reward model on held-out pairs: each answer's reward against its length in words,
    chosen and rejected answers apart (jittered sideways so equal points stay visible)."""
    import numpy as np
    fig, axes = _figure(6.4, 3.9)
    ax = axes[0][0]
    jitter = np.random.default_rng(0)
    for key, words, color, label in (("preferred", "preferred_words", "#2ca02c", "chosen"),
                                     ("other", "other_words", "#d62728", "rejected")):
        x = np.asarray(held[words], dtype=float)
        x = x + jitter.uniform(-0.18, 0.18, len(x)) + (-0.1 if key == "preferred" else 0.1)
        ax.scatter(x, held[key], s=9, alpha=0.55, color=color, label=label, linewidths=0)
    ax.set_title("held-out rewards vs answer length", fontsize=10, y=1.0, pad=5)
    ax.set_xlabel("answer length (words)", fontsize=9)
    ax.set_ylabel("reward", fontsize=9)
    ax.tick_params(which="both", labelsize=8)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    _fit_single(fig, ax, suptitle=False)
    return _finish(fig, path)
