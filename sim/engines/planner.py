"""The planner engine: "make a real model fit on one GPU", graded by the memory planner.

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
from ..files import write_json
from ..memplan.accounting import Strategy, plan_memory
from ..memplan.units import parse_size
from ..result import RunResult
from .base import Prepared, RunOptions

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


def _settings(incident, fix_ids: Sequence[str] = (),
              sets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The planner settings for an incident with fixes and free-form settings (validated)."""
    scenario = incident.scenario
    settings: dict[str, Any] = dict(scenario.base)
    settings.update({k: v for k, v in incident.overrides.items() if k != "seed"})
    if incident.cause_id:
        settings.update(scenario.cause(incident.cause_id).fault.config)
    for fix_id in fix_ids:
        settings.update(scenario.fix(fix_id).config)
    settings.update({k: parse_setting(k, v) for k, v in (sets or {}).items()})
    resolve(settings)
    return settings


def resolve(settings: Mapping[str, Any]):
    """(model name, GPU bytes, Strategy); ConfigError if the strategy is impossible."""
    rest = dict(settings)
    model, gpu = rest.pop("model"), parse_size(rest.pop("gpu"))
    try:
        strategy = Strategy(**rest)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return model, gpu, strategy


class PlannerEngine:
    name = "planner"
    working = "Computing the memory plan of the failing job ..."
    rerunning = "Recomputing the plan with your fix ..."

    def parse_settings(self, pairs: Sequence[str]) -> dict[str, Any]:
        return parse_settings(pairs)

    def prepare(self, incident, fix_ids: Sequence[str] = (),
                sets: Mapping[str, Any] | None = None) -> Prepared:
        for fix_id in fix_ids:
            incident.scenario.fix(fix_id)                  # unknown names fail loudly
        return Prepared(incident, self, tuple(fix_ids), dict(sets or {}),
                        _settings(incident, fix_ids, sets))

    def config_key(self, prepared: Prepared) -> str:
        return json.dumps(prepared.config, sort_keys=True, default=str)

    def settings_of(self, prepared: Prepared) -> dict[str, Any]:
        return dict(prepared.config)

    def execute(self, prepared: Prepared, out_dir=None,
                options: RunOptions = RunOptions()) -> RunResult:
        """The planner's 're-run': a RunResult whose summary says whether the plan fits."""
        from ..memplan.strategies import rank_strategies

        model, gpu, strategy = resolve(prepared.config)
        plan = plan_memory(model, strategy)
        fits = plan.fits(gpu)
        _, _, broken = resolve(_settings(prepared.incident))   # the starting point
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
            "nonfinite_steps": 0, "suppressed_steps": 0,
            "peak_memory_mb": plan.gpu_total / 2**20,
        }
        out = Path(out_dir) if out_dir else None
        if out:
            out.mkdir(parents=True, exist_ok=True)
            settings = {"model": model, "gpu": gpu, **plan.to_dict()["strategy"]}
            write_json(out / "config.json", {**prepared.header(), "config": settings})
            write_json(out / "plan.json", plan.to_dict(gpu))
            write_json(out / "summary.json", summary)
        return RunResult(prepared, summary["status"], None if fits else plan.why(gpu), [], {},
                         summary, out_dir=out, detail=plan)

    def summary_lines(self, result: RunResult) -> list[str]:
        return plan_lines(result.summary)

    def write_plots(self, result: RunResult, out_dir: Path) -> list[Path]:
        from ..memplan.chart import plot_plans
        folder = Path(out_dir) / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "memory_plan.png"
        plot_plans([(result.summary["plan"], result.detail)],
                   round(result.summary["gpu_capacity_gb"] * 1e9), str(path))
        return [path]

    def evidence_plot(self, before: RunResult, after: RunResult, plot_dir: Path) -> Path:
        """Stacked bars of the broken plan and the learner's plan against the GPU."""
        from ..memplan.chart import plot_plans
        path = Path(plot_dir) / "before_after_memory.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_plans([("before: " + before.summary["plan"], before.detail),
                    ("after: " + after.summary["plan"], after.detail)],
                   round(after.summary["gpu_capacity_gb"] * 1e9), str(path))
        return path

    def verdict_notes(self, verdict) -> list[str]:
        return ["Your plan: " + verdict.after.summary["why"]]


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


ENGINE = PlannerEngine()
