"""Stacked bar chart of per-GPU memory by category, one bar per strategy (PNG).

Drawn on a `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so it works
headless and leaves a notebook's pyplot backend alone; matplotlib is imported only when a chart
is drawn.
"""
from __future__ import annotations

import dataclasses
import textwrap

from .accounting import CATEGORIES, MemoryPlan
from .units import DISPLAY

COLORS = {
    "weights": "#4C72B0", "gradients": "#DD8452", "master_weights": "#937860",
    "optimizer_states": "#C44E52", "activations": "#55A868", "logits": "#8C8C8C",
    "kv_cache": "#8172B3", "gather_buffer": "#DA8BC3",
}
DPI = 110


def _on_off(name: str):
    return lambda value: f"{name} {'on' if value else 'off'}"


# How each Strategy field reads on a bar's label when bars differ in it.
_SETTING_WORDS = {
    "method": lambda v: {"full": "full fine-tune", "lora": "LoRA", "qlora": "QLoRA"}.get(v, v),
    "precision": str,
    "optimizer": str,
    "master_weights": lambda v: "fp32 master copy" if v else "no fp32 master copy",
    "zero": lambda v: f"ZeRO-{v}" if v else "no ZeRO",
    "gpus": lambda v: f"{v} GPU{'s' if v != 1 else ''}",
    "offload": lambda v: "optimizer on CPU" if v else "no offload",
    "batch": lambda v: f"micro-batch {v}",
    "seq": lambda v: f"seq {v}",
    "checkpointing": _on_off("checkpointing"),
    "flash": lambda v: "flash attention" if v else "unfused attention",
    "lora_rank": lambda v: f"LoRA r={v}",
    "lora_targets": lambda v: "targets " + ",".join(v),
    "double_quant": _on_off("double quant"),
    "inference": lambda v: "inference" if v else "training",
}


def setting_differences(plans: list[MemoryPlan]) -> list[list[str]]:
    """For each plan, its settings (in words) wherever the plans are not all the same:
    the model and every `Strategy` field. All-empty lists when the settings are identical."""
    rows: list[list[str]] = [[] for _ in plans]
    if len({p.model for p in plans}) > 1:
        for row, plan in zip(rows, plans):
            row.append(plan.model)
    for field in dataclasses.fields(plans[0].strategy) if plans else ():
        values = [getattr(p.strategy, field.name) for p in plans]
        if any(v != values[0] for v in values):
            words = _SETTING_WORDS.get(field.name, lambda v, n=field.name: f"{n}={v}")
            for row, value in zip(rows, values):
                row.append(words(value))
    return rows


def plot_plans(bars: list[tuple[str, MemoryPlan]], gpu_bytes: int, path: str | None, *,
               unit: str = "GB", title: str = "", differences: bool = False,
               xlabel: str | None = None):
    """Write a stacked bar PNG: ``bars`` is ``[(label, plan), ...]``; returns ``path`` (with
    ``path=None``, the Figure itself, e.g. for a notebook).

    ``differences=True`` adds, under each bar's label, the settings in which the bars differ
    (e.g. "checkpointing off" / "checkpointing on"), so bars whose strategy labels are the same
    still read apart; identical settings say so. ``xlabel`` defaults to the memory command's
    "strategy (first bar: as requested)" when there are several bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    div, legend_unit = DISPLAY[unit]
    labels = [label + (f"\n(+{p.cpu_total / div:,.0f} {unit} CPU RAM)" if p.cpu_total else "")
              for label, p in bars]
    if differences:
        diffs = setting_differences([p for _, p in bars])
        if any(diffs):
            labels = [f"{label}\n" + "\n".join(textwrap.wrap(", ".join(d), 26))
                      for label, d in zip(labels, diffs)]
        else:
            labels = [f"{label}\n(same settings)" for label in labels]
    used = [c for c in CATEGORIES if any(p.gpu.get(c) for _, p in bars)]
    fig = Figure(figsize=(max(6.0, 1.25 * len(bars) + 3), 5.2), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(bars)))
    bottoms = [0.0] * len(bars)
    for cat in used:
        vals = [p.gpu.get(cat, 0) / div for _, p in bars]
        ax.bar(positions, vals, bottom=bottoms, color=COLORS.get(cat),
               label=cat.replace("_", " "), edgecolor="white", linewidth=0.5)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    cap = gpu_bytes / div
    ax.axhline(cap, color="black", linestyle="--", linewidth=1.2,
               label=f"GPU capacity {cap:,.0f} {unit}")
    for x, (total, (_, p)) in enumerate(zip(bottoms, bars)):
        fits = p.fits(gpu_bytes)
        ax.text(x, total, f"{total:,.1f}" + ("" if fits else " ✗"), ha="center", va="bottom",
                fontsize=8, color="black" if fits else "#C44E52",
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
    ax.set_xticks(positions)
    # few bars: labels upright and centred under their bar; many: slanted so they do not collide
    slanted = len(bars) > 3
    ax.set_xticklabels(labels, fontsize=8, rotation=25 if slanted else 0,
                       ha="right" if slanted else "center")
    ax.set_ylabel(f"memory per GPU ({legend_unit})")
    if xlabel is None:
        xlabel = "strategy (first bar: as requested)" if len(bars) > 1 else "strategy"
    ax.set_xlabel(xlabel)
    ax.set_title(title or "Memory per GPU by category")
    ax.set_ylim(0, max(bottoms + [cap]) * 1.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    if path is None:
        return fig
    # the legend sits outside the axes and labels vary in length: crop to what was drawn
    # (one measuring pass, no layout engine)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path
