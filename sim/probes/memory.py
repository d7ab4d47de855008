"""Simulated memory: peak by category, per-step use, the budget; `memory snapshot` exports
the allocation history for PyTorch's memory visualiser."""
from __future__ import annotations

from pathlib import Path

from ..result import RunResult
from ._common import ProbeError, _finite, _rebuild

SNAPSHOT_FILE = "memory_snapshot.pickle"


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


def export_snapshot(result: RunResult, path: Path) -> dict:
    """Replay the run on a recording device (same config, same code, same budget: the same
    allocations, and the same out-of-memory) and write the snapshot to `path` (pickle, the
    format of torch.cuda.memory._dump_snapshot). Returns the snapshot's `debugsim` entry."""
    from ..device import SimulatedOutOfMemory, record_memory_history
    from ..loop import train
    from ..memory_snapshot import MemoryHistory, write
    config, callbacks, note = _rebuild(result)
    with record_memory_history(MemoryHistory()) as history:
        try:
            train(config, callbacks, track_memory=True)
        except SimulatedOutOfMemory:
            pass
    write(history.snapshot, path)
    return {**history.snapshot["debugsim"], **({"replay_note": note} if note else {})}


def render_export(result: RunResult, plot_dir: Path) -> str:
    folder = Path(result.out_dir) if result.out_dir else Path(plot_dir).parent
    path = folder / SNAPSHOT_FILE
    meta = export_snapshot(result, path)
    events = meta["events_in_trace"]
    lines = [f"memory snapshot: {path} ({events} events; blocks live at the "
             + ("out-of-memory" if result.status == "oom" else "end of the run") + ")",
             f"  open it at https://pytorch.org/memory_viz (drag the file in), or: "
             f"python -m torch.cuda._memory_viz stats {path}",
             f"  size cap: {meta['note']}"]
    if meta.get("replay_note"):
        lines.append(f"  note: {meta['replay_note']}")
    return "\n".join(lines)


NAME = "memory"
USAGE = "memory [snapshot]"
HELP = "simulated memory: peak by category, per-step use; 'snapshot' exports it for memory_viz"
ENGINES = ("training",)
ORDER = 50                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    if args and args[0] == "snapshot":
        return render_export(result, plot_dir)
    if args:
        raise ProbeError(f"unknown argument '{args[0]}'; try 'memory' or 'memory snapshot'")
    return render_memory_breakdown(memory_breakdown(result))
