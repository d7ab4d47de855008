"""Text for people: run summaries, verdicts with before/after evidence, `summary.md`."""
from __future__ import annotations

from pathlib import Path

from .runner import RunResult, write_atomic
from .scenario import Check, Scenario


def _num(value, digits: int = 3) -> str:
    if value is None or value != value:
        return "nan"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run_lines(result: RunResult) -> list[str]:
    s = result.summary
    if "plan" in s:                                   # a planner scenario: no training steps
        from .memplan.exercise import plan_lines
        return plan_lines(s)
    lines = [f"status: {result.status}" + (f" — {result.error}" if result.error else ""),
             f"steps: {s['steps_completed']}/{result.config.steps}   "
             f"final loss: {_num(s['final_loss'])}   held-out loss: {_num(s['eval_loss'])}",
             f"non-finite steps: {s['nonfinite_steps']}"
             + (f" (first at step {s['first_nonfinite_step']})" if s["nonfinite_steps"] else "")]
    if result.config.track_memory:
        lines.append(f"peak simulated memory: {s['peak_memory_mb']:.2f} MiB"
                     + (f" of {result.config.memory_budget_mib:g} MiB"
                        if result.config.memory_budget_mib else ""))
    for key, label in (("repeat_rate", "repeated 3-grams"), ("longest_loop", "longest loop"),
                       ("valid_rate", "grammatical transitions"), ("distinct_2", "distinct-2")):
        if key in s:
            lines.append(f"{label}: {_num(s[key])}")
    return lines


def check_lines(checks: list[Check]) -> list[str]:
    return [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks]


def verdict_lines(verdict, scenario: Scenario) -> list[str]:
    fixes = ", ".join(verdict.fix_ids) or "(none)"
    sets = " ".join(f"{k}={v}" for k, v in verdict.sets.items())
    lines = [f"Cause: you named '{verdict.named_cause}'; it was '{verdict.actual_cause}' — "
             + ("correct." if verdict.cause_correct else "not correct."),
             f"Fix: {fixes}{' with ' + sets if sets else ''} -> {verdict.fix_verdict.upper()}",
             "Before (broken run):", *check_lines(verdict.before_checks),
             "After (re-run with your fix):", *check_lines(verdict.after_checks)]
    if verdict.fix_verdict == "masked":
        lines.append("Your fix hides the symptom: non-finite steps still happen, they are just "
                     "skipped. The bug is still there.")
    lines.append("PASSED" if verdict.passed else "NOT PASSED")
    return lines


def write_summary_md(result: RunResult, scenario: Scenario, path: Path, plots=()) -> None:
    fixes = ", ".join(result.fix_ids) or "none"
    lines = [f"# {scenario.id} — {scenario.title}", "",
             f"- seed: {result.seed}", f"- fixes: {fixes}",
             f"- settings: {' '.join(f'{k}={v}' for k, v in result.sets.items()) or 'none'}",
             f"- healthy means: {scenario.criterion.describe()}", "",
             "## Result", "", *[f"- {line}" for line in run_lines(result)], "",
             "## Checks", "", *check_lines(scenario.criterion.judge(result.summary)), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots], ""]
    lines += ["Files: `metrics.jsonl` (one record per step), `timings.jsonl` (wall clock), "
              "`config.json`, `summary.json`.", ""]
    write_atomic(path, "\n".join(lines))
