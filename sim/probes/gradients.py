"""Per-layer gradient norms at one step."""
from __future__ import annotations

import math
import statistics

from ..result import RunResult
from ._common import NONFINITE_MARK, _finite, end_note, _record_at, _fmt, step_arg


def layer_grads(result: RunResult, step: int) -> dict:
    """Per-layer gradient L2 norms at `step` (negative counts from the end), the global norm,
    and each layer's norm relative to its median over the run (a spike shows as >> 1)."""
    if not result.records:
        return {"step": None, "layers": {}, "global": None, "note": end_note(result)}
    record = _record_at(result, step)
    layers = {}
    for layer, value in record.get("layer_grad_norm", {}).items():
        history = [r["layer_grad_norm"].get(layer) for r in result.records]
        finite = [v for v in history if _finite(v)]
        median = statistics.median(finite) if finite else float("nan")
        norm = float("nan") if value is None else float(value)
        layers[layer] = {"norm": norm, "run_median": median,
                         "vs_median": norm / median if finite and median > 0 else float("nan")}
    return {"step": record["step"], "layers": layers,
            "global": float("nan") if record.get("grad_norm") is None else record["grad_norm"],
            "nonfinite": record.get("nonfinite", 0), "lr": record.get("lr")}


def render_layer_grads(report: dict) -> str:
    if report.get("step") is None:
        return f"no per-layer gradients: {report.get('note', 'no steps recorded')}"
    lines = [f"per-layer gradient norms at step {report['step']} "
             f"(global {_fmt(report['global'])}, lr {_fmt(report['lr'], '.3g')})"]
    norms = [v["norm"] for v in report["layers"].values() if math.isfinite(v["norm"])
             and v["norm"] > 0]
    top = max(norms) if norms else 1.0
    width = max([len(name) for name in report["layers"]] + [5])
    lines.append(f"  {'layer':<{width}}  {'norm':>10}  {'x median':>8}")
    for name, row in report["layers"].items():
        norm = row["norm"]
        if not math.isfinite(norm):
            bar = "NaN/inf " + "!" * 10
            shown = NONFINITE_MARK
        else:
            # bar length on a log scale: 4 decades below the largest layer = empty
            share = 1 + math.log10(norm / top) / 4 if norm > 0 else 0
            bar = "#" * max(0, round(24 * share))
            shown = _fmt(norm)
        lines.append(f"  {name:<{width}}  {shown:>10}  {_fmt(row['vs_median'], '.2f'):>8}  {bar}")
    if report.get("nonfinite"):
        lines.append(f"  {report['nonfinite']} non-finite values in the loss and gradients")
    return "\n".join(lines)


NAME = "grads"
USAGE = "grads STEP"
HELP = "per-layer gradient norms at a step"
ENGINES = ("training",)
ORDER = 30                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_layer_grads(layer_grads(result, step_arg(args, "grads 12")))
