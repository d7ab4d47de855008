"""Planner scenarios: "make a real model fit on one GPU", graded by the memory planner.

A scenario with `engine="planner"` has a base of planner settings (`model`, `gpu` and the
`Strategy` fields); its causes and fixes change those settings. Executing it means computing
the memory plan of the resulting strategy — the analytic counterpart of re-running training —
and the criterion's `require_fit` reads whether that plan fits the GPU.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import ConfigError, did_you_mean
from .accounting import Strategy, plan_memory
from .units import parse_size

_FIELDS = {f.name: f for f in dataclasses.fields(Strategy)}
SETTINGS = ("model", "gpu", *_FIELDS)


def parse_setting(key: str, raw: Any) -> Any:
    """Parse one `key=value` for a planner scenario; ConfigError (one line) if unusable."""
    if key not in SETTINGS:
        raise ConfigError(f"unknown setting '{key}'{did_you_mean(key, SETTINGS)}; "
                          f"planner settings: {', '.join(SETTINGS)}")
    if not isinstance(raw, str) or key in ("model", "lora_targets"):
        return raw
    if key == "gpu":
        try:
            parse_size(raw)
        except ValueError as error:
            raise ConfigError(f"gpu={raw!r}: {error}") from None
        return raw
    default = _FIELDS[key].default
    if isinstance(default, bool):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"{key}={raw!r}: expected true or false")
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r}: expected an integer") from None
    return raw


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    parsed = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"'{pair}': expected key=value, e.g. method=lora")
        parsed[key.strip()] = parse_setting(key.strip(), raw.strip())
    return parsed


def assemble_plan(scenario, cause_id: str | None, fix_ids: Sequence[str] = (),
                  sets: Mapping[str, Any] | None = None):
    """(model name, GPU bytes, Strategy) for a cause with fixes and free-form settings."""
    settings: dict[str, Any] = dict(scenario.base)
    if cause_id:
        settings.update(scenario.cause(cause_id).fault.config)
    for fix_id in fix_ids:
        settings.update(scenario.fix(fix_id).config)
    settings.update({k: parse_setting(k, v) for k, v in (sets or {}).items()})
    model, gpu = settings.pop("model"), parse_size(settings.pop("gpu"))
    try:
        strategy = Strategy(**settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return model, gpu, strategy


def execute_plan(scenario, seed: int, cause_id: str | None = None, fix_ids: Sequence[str] = (),
                 sets: Mapping[str, Any] | None = None, out_dir=None):
    """The planner's 're-run': a RunResult whose summary says whether the plan fits."""
    from ..runner import RunResult, write_atomic
    from .strategies import rank_strategies

    model, gpu, strategy = assemble_plan(scenario, cause_id, fix_ids, sets)
    plan = plan_memory(model, strategy)
    fits = plan.fits(gpu)
    _, _, broken = assemble_plan(scenario, cause_id)          # what the learner started from
    cheaper = [r.label for r in rank_strategies(model, gpu, broken)[:3]]
    usage = f"{plan.gpu_total / 1e9:.1f} GB per GPU of {gpu / 1e9:.0f} GB"
    summary = {
        "status": "completed" if fits else "oom",
        "oom": None if fits else {"step": 0, "message": plan.why(gpu), "detail": usage},
        "fit_detail": usage,
        "plan": strategy.label(),
        "strategy": strategy.describe(),
        "gpu_capacity_gb": gpu / 1e9,
        "gpu_total_gb": plan.gpu_total / 1e9,
        "cpu_total_gb": plan.cpu_total / 1e9,
        "breakdown_gb": {k: round(v / 1e9, 3) for k, v in plan.gpu.items() if v},
        "trainable_params": plan.trainable_params,
        "why": plan.why(gpu),
        "cheapest_that_fit": cheaper,
        "nonfinite_steps": 0, "suppressed_steps": 0, "peak_memory_mb": plan.gpu_total / 2**20,
    }
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        settings = {"model": model, "gpu": gpu, **plan.to_dict()["strategy"]}
        write_atomic(out / "config.json", json.dumps(
            {"scenario": scenario.id, "seed": seed, "fixes": list(fix_ids),
             "sets": dict(sets or {}), "config": settings}, indent=2) + "\n")
        write_atomic(out / "plan.json", json.dumps(plan.to_dict(gpu), indent=2) + "\n")
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        from .chart import plot_plans
        (out / "plots").mkdir(exist_ok=True)
        plot_plans([(strategy.label(), plan)], gpu, str(out / "plots" / "memory_plan.png"))
    return RunResult(scenario.id, seed, cause_id, tuple(fix_ids), dict(sets or {}), strategy,
                     summary["status"], None if fits else plan.why(gpu), [], {}, summary,
                     out_dir=out, plan=plan)


def plot_before_after(before, after, path: Path) -> Path:
    """Stacked bars of the broken plan and the learner's plan against the GPU."""
    from .chart import plot_plans
    plot_plans([("before: " + before.summary["plan"], before.plan),
                ("after: " + after.summary["plan"], after.plan)],
               round(after.summary["gpu_capacity_gb"] * 1e9), str(path), differences=True,
               xlabel="", title="Memory per GPU by category: before vs after")
    return path


def plan_lines(summary: Mapping[str, Any]) -> list[str]:
    lines = [f"plan: {summary['strategy']}",
             f"per-GPU memory: {summary['gpu_total_gb']:.1f} GB of {summary['gpu_capacity_gb']:.0f} GB"
             + (f" (+{summary['cpu_total_gb']:.1f} GB on the CPU)" if summary["cpu_total_gb"] else ""),
             "  " + ", ".join(f"{k} {v:.1f} GB" for k, v in summary["breakdown_gb"].items()),
             summary["why"]]
    if summary["cheapest_that_fit"]:
        lines.append("cheapest combinations that fit, by cost: "
                     + ", ".join(summary["cheapest_that_fit"]))
    return lines

