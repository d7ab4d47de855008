"""Text for people: run summaries, verdicts with before/after evidence, `summary.md`."""
from __future__ import annotations

from pathlib import Path

from .files import write_atomic
from .result import RunResult
from .scenario import Check


def run_lines(result: RunResult) -> list[str]:
    return result.prepared.engine.summary_lines(result)


def check_lines(checks: list[Check]) -> list[str]:
    return [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks]


def verdict_lines(verdict) -> list[str]:
    fixes = ", ".join(verdict.fix_ids) or "(none)"
    sets = " ".join(f"{k}={v}" for k, v in verdict.sets.items())
    lines = [f"Cause: you named '{verdict.named_cause}' — "
             + ("correct." if verdict.cause_correct else "not correct."),
             f"Fix: {fixes}{' with ' + sets if sets else ''} -> {verdict.fix_verdict.upper()}",
             "Before (broken run):", *check_lines(verdict.before_checks),
             "After (re-run with your fix):", *check_lines(verdict.after_checks)]
    if verdict.fix_verdict == "masked":
        lines.append("Your fix hides the symptom: non-finite steps still happen, they are just "
                     "skipped. The bug is still there.")
    if verdict.fix_verdict == "workaround":
        lines += [f"A workaround, not a fix: {cost}" for cost in verdict.costs]
    if verdict.unneeded:
        lines.append(f"Unneeded changes (the re-run passes without them): "
                     f"{', '.join(verdict.unneeded)}")
    lines.append("PASSED" if verdict.passed else "NOT PASSED")
    return lines


FILES = (("metrics.jsonl", " (one record per step)"), ("timings.jsonl", " (wall clock)"),
         ("plan.json", " (the memory plan)"), ("config.json", ""), ("summary.json", ""),
         ("changes.md", " (what changed since the last good run)"))


def write_summary_md(result: RunResult, path: Path, plots=()) -> None:
    scenario = result.prepared.scenario
    fixes = ", ".join(result.fix_ids) or "none"
    lines = [f"# {scenario.id} — {scenario.title}", "",
             f"- seed: {result.seed}", f"- fixes: {fixes}",
             f"- settings: {' '.join(f'{k}={v}' for k, v in result.sets.items()) or 'none'}",
             f"- healthy means: {scenario.criterion.describe()}", "",
             "## Result", "", *[f"- {line}" for line in run_lines(result)], "",
             "## Checks", "", *check_lines(scenario.criterion.judge(result.summary)), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots], ""]
    files = [f"`{name}`{what}" for name, what in FILES if (path.parent / name).exists()]
    lines += ["Files: " + ", ".join(files) + ".", ""]
    write_atomic(path, "\n".join(lines))
