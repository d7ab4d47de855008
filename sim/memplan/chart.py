"""Stacked bar chart of per-GPU memory by category, one bar per strategy (PNG)."""
from __future__ import annotations

from .accounting import CATEGORIES, MemoryPlan
from .units import DISPLAY

COLORS = {
    "weights": "#4C72B0", "gradients": "#DD8452", "master_weights": "#937860",
    "optimizer_states": "#C44E52", "activations": "#55A868", "logits": "#8C8C8C",
    "kv_cache": "#8172B3", "gather_buffer": "#DA8BC3",
}


def plot_plans(bars: list[tuple[str, MemoryPlan]], gpu_bytes: int, path: str, *,
               unit: str = "GB", title: str = "") -> str:
    """Write a stacked bar PNG: ``bars`` is ``[(label, plan), ...]``; returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    div, legend_unit = DISPLAY[unit]
    labels = [label + (f"\n(+{p.cpu_total / div:,.0f} {unit} CPU RAM)" if p.cpu_total else "") for label, p in bars]
    used = [c for c in CATEGORIES if any(p.gpu.get(c) for _, p in bars)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.25 * len(bars) + 3), 5.2))
    bottoms = [0.0] * len(bars)
    for cat in used:
        vals = [p.gpu.get(cat, 0) / div for _, p in bars]
        ax.bar(labels, vals, bottom=bottoms, color=COLORS.get(cat), label=cat.replace("_", " "),
               edgecolor="white", linewidth=0.5)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    cap = gpu_bytes / div
    ax.axhline(cap, color="black", linestyle="--", linewidth=1.2, label=f"GPU capacity {cap:,.0f} {unit}")
    for x, (total, (_, p)) in enumerate(zip(bottoms, bars)):
        ax.text(x, total, f"{total:,.1f}" + ("" if p.fits(gpu_bytes) else " ✗"), ha="center", va="bottom",
                fontsize=8, color="black" if p.fits(gpu_bytes) else "#C44E52",
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
    ax.set_ylabel(f"memory per GPU ({legend_unit})")
    ax.set_xlabel("strategy (first bar: as requested)")
    ax.set_title(title or "Memory per GPU by category")
    ax.set_ylim(0, max(bottoms + [cap]) * 1.12)
    plt.setp(ax.get_xticklabels(), rotation=25, ha="right", fontsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
