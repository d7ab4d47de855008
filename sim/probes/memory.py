"""Simulated memory: peak by category, per-step use, the budget."""
from __future__ import annotations


from ..result import RunResult
from ._common import _finite


def memory_breakdown(result: RunResult) -> dict:
    """Peak memory by category (from the end record), memory in use after each step and each
    step's peak, the step that peaked, and the budget."""
    config = result.config
    tracked = result.end.get("peak_mib") is not None
    in_use = [r.get("mem_mib") for r in result.records]
    peaks = [r.get("mem_peak_mib") for r in result.records]
    finite_peaks = [(p, r["step"]) for p, r in zip(peaks, result.records) if _finite(p)]
    peak_step = max(finite_peaks)[1] if finite_peaks else None
    oom = None
    if result.status == "oom":
        oom = {"step": len(result.records), "message": result.error}
        peak_step = len(result.records)
    report = {
        "tracked": tracked,
        "status": result.status,
        "budget_mib": config.memory_budget_mib or None,
        "peak_mib": result.end.get("peak_mib"),
        "peak_breakdown_mib": dict(result.end.get("peak_breakdown_mib") or {}),
        "peak_step": peak_step,
        "in_use_mib": in_use,
        "step_peak_mib": peaks,
        "steps": [r["step"] for r in result.records],
        "oom": oom,
    }
    if not tracked:
        report["note"] = "memory was not tracked in this run (no memory budget)"
    # growth of memory in use between steps: a leak grows steadily, a healthy run is flat
    finite_use = [v for v in in_use if _finite(v)]
    if len(finite_use) >= 4:
        half = len(finite_use) // 2
        report["in_use_growth_mib_per_step"] = (finite_use[-1] - finite_use[half]) / max(
            len(finite_use) - 1 - half, 1)
    return report


def render_memory_breakdown(report: dict) -> str:
    if not report["tracked"]:
        return report.get("note", "memory not tracked")
    peak = report["peak_mib"] or 0.0
    budget = report["budget_mib"]
    lines = [f"peak memory {peak:.2f} MiB" + (f" of a {budget:g} MiB budget "
                                              f"({peak / budget:.0%})" if budget else
                                              " (no budget set)")
             + (f", reached at step {report['peak_step']}" if report["peak_step"] is not None
                else "")]
    breakdown = report["peak_breakdown_mib"]
    if breakdown:
        lines.append("  at the peak, by category:")
        width = max(len(k) for k in breakdown)
        for name, mib in sorted(breakdown.items(), key=lambda kv: -kv[1]):
            share = mib / peak if peak else 0.0
            lines.append(f"    {name:<{width}}  {mib:8.2f} MiB  {share:6.1%}  "
                         + "#" * round(30 * share))
    use = [v for v in report["in_use_mib"] if _finite(v)]
    step_peaks = [v for v in report["step_peak_mib"] if _finite(v)]
    if use:
        lines.append(f"  in use after a step: first {use[0]:.2f} MiB, last {use[-1]:.2f} MiB, "
                     f"max {max(use):.2f} MiB")
        lines.append(f"  per-step peak: min {min(step_peaks):.2f} MiB, "
                     f"max {max(step_peaks):.2f} MiB")
    if "in_use_growth_mib_per_step" in report:
        growth = report["in_use_growth_mib_per_step"]
        lines.append(f"  growth of memory in use over the second half: {growth:+.3f} MiB/step")
    if report["oom"]:
        lines.append(f"  OUT OF MEMORY at step {report['oom']['step']}: {report['oom']['message']}")
    return "\n".join(lines)


NAME = "memory"
USAGE = "memory"
HELP = "simulated memory: peak by category, per-step use"
ENGINES = ("training",)
ORDER = 50                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_memory_breakdown(memory_breakdown(result))
