"""The planner engine: "make a real model fit on one GPU", graded by the memory planner.

A scenario with `engine="planner"` has a base of planner settings (`model`, `gpu` and the
`Strategy` fields): the job config. Its causes and fixes change those settings, or add and
repair bugs in the team's launcher (`memplan/launcher.py`), the code between the config and
the model that trains. Executing it means computing the memory plan of what the launcher
really runs — the analytic counterpart of re-running training — and the criterion's
`require_fit` reads whether that plan fits the GPU. Everything written or printed about the
job names it by its config (what the team asked for); only the numbers come from what ran.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import ConfigError, did_you_mean
from ..files import write_json
from ..memplan.accounting import Strategy, plan_memory
from ..memplan.launcher import launched
from ..memplan.presets import UnknownModel, get_preset
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
    if key == "model":
        try:
            get_preset(raw) if isinstance(raw, str) else None
        except UnknownModel as error:
            raise ConfigError(f"model={raw!r}: {error}") from None
        return raw
    if not isinstance(raw, str) or key == "lora_targets":
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
    """(model name, GPU bytes, Strategy); ConfigError (one line) if the model, the GPU or the
    strategy is unusable, or the planner cannot compute this combination (e.g. a sequence
    longer than a model with learned positions has positions for)."""
    rest = dict(settings)
    try:
        model, gpu = rest.pop("model"), parse_size(rest.pop("gpu"))
        strategy = Strategy(**rest)
        plan_memory(model, strategy)                # validates the combination, cheaply
    except (TypeError, ValueError, LookupError) as error:
        raise ConfigError(" ".join(str(error).split())) from None
    return model, gpu, strategy


class PlannerEngine:
    name = "planner"
    working = "Computing the memory plan of the failing job ..."
    rerunning = "Recomputing the plan with your fix ..."

    def parse_settings(self, pairs: Sequence[str]) -> dict[str, Any]:
        return parse_settings(pairs)

    def prepare(self, incident, fix_ids: Sequence[str] = (),
                sets: Mapping[str, Any] | None = None) -> Prepared:
        """The job config (settings) and the launcher bugs it goes through (code)."""
        scenario = incident.scenario
        fixes = [scenario.fix(fix_id) for fix_id in fix_ids]   # unknown names fail loudly
        cause = scenario.cause(incident.cause_id) if incident.cause_id else None
        launcher_code = list(cause.fault.callbacks) if cause else []
        for fix in fixes:
            launcher_code = [c for c in launcher_code if c not in fix.repairs]
            launcher_code.extend(fix.callbacks)
        return Prepared(incident, self, tuple(fix_ids), dict(sets or {}),
                        _settings(incident, fix_ids, sets), tuple(launcher_code))

    def config_key(self, prepared: Prepared) -> str:
        return json.dumps(prepared.config, sort_keys=True, default=str)

    def settings_of(self, prepared: Prepared) -> dict[str, Any]:
        """The job config, every field spelt out (a field left at its default still reads)."""
        model, _, strategy = resolve(prepared.config)
        fields = dataclasses.asdict(strategy)
        fields["lora_targets"] = ",".join(strategy.lora_targets)
        return {"model": model, "gpu": prepared.config["gpu"], **fields}

    def execute(self, prepared: Prepared, out_dir=None,
                options: RunOptions = RunOptions()) -> RunResult:
        """The planner's 're-run': a RunResult whose summary says whether the plan fits.

        A plan that does not fit fails like the real job would: a CUDA out-of-memory error in
        PyTorch's words, at the first allocation that does not fit. Nothing here ranks the
        categories or names a remedy: the `plan` and `strategies` probes answer that on request.
        """
        model, gpu, strategy = resolve(prepared.config)
        plan = plan_memory(model, launched(strategy, prepared.callbacks))
        fits = plan.fits(gpu)
        usage = f"{plan.gpu_total / 1e9:.1f} GB per GPU of {gpu / 1e9:.0f} GB"
        error = None if fits else cuda_oom_message(plan, gpu)
        summary = {
            "status": "completed" if fits else "oom",
            "oom": None if fits else {"step": 0, "message": error, "detail": usage},
            "fit_detail": usage,
            "model": plan.model,
            "params": plan.params,
            "plan": strategy.label(),
            "strategy": strategy.describe(),
            "gpu_capacity_gb": gpu / 1e9,
            "gpu_total_gb": plan.gpu_total / 1e9,
            "cpu_total_gb": plan.cpu_total / 1e9,
            "breakdown_gb": {k: round(v / 1e9, 3) for k, v in plan.gpu.items() if v},
            "trainable_params": plan.trainable_params,
            "all_params": all_params(plan),
            "nonfinite_steps": 0, "suppressed_steps": 0,
            "peak_memory_mb": plan.gpu_total / 2**20,
        }
        out = Path(out_dir) if out_dir else None
        if out:
            out.mkdir(parents=True, exist_ok=True)
            asked = as_asked(plan, strategy)
            settings = {"model": model, "gpu": gpu, **asked.to_dict()["strategy"]}
            write_json(out / "config.json", {**prepared.header(), "config": settings})
            write_json(out / "plan.json", plan_record(asked, gpu))
            write_json(out / "summary.json", summary)
        return RunResult(prepared, summary["status"], error, [], {},
                         summary, out_dir=out, detail=plan)

    def summary_lines(self, result: RunResult) -> list[str]:
        """What the job printed: its description, then how step 0 ended."""
        summary = result.summary
        lines = _wrap(f"job: {summary['model']} ({summary['params'] / 1e9:.1f} B parameters) on "
                      f"a {summary['gpu_capacity_gb']:g} GB GPU: {summary['strategy']}")
        if summary["oom"]:
            lines.append("step 0 failed (a simulated error: the planner's byte count, "
                         "in PyTorch's words):")
            lines += _wrap(summary["oom"]["message"], indent="  ")
        else:
            lines.append(f"step 0 completed (simulated): {summary['gpu_total_gb']:.1f} GB of "
                         f"{summary['gpu_capacity_gb']:g} GB per GPU in use at the peak"
                         + (f", {summary['cpu_total_gb']:.1f} GB in CPU RAM"
                            if summary["cpu_total_gb"] else ""))
        return lines

    def write_plots(self, result: RunResult, out_dir: Path) -> list[Path]:
        """None unasked: the chart by category is the breakdown, which the `plan` probe
        draws when the learner asks for it (a real job's folder has no such chart)."""
        return []

    def plan_chart(self, result: RunResult, plot_dir: Path) -> Path:
        from ..memplan.chart import plot_plans
        path = Path(plot_dir) / "memory_plan.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_plans([(result.summary["plan"], _as_asked(result))],
                   round(result.summary["gpu_capacity_gb"] * 1e9), str(path))
        return path

    def evidence_plot(self, before: RunResult, after: RunResult, plot_dir: Path) -> Path:
        """Stacked bars of the broken plan and the learner's plan against the GPU."""
        from ..memplan.chart import plot_plans
        path = Path(plot_dir) / "before_after_memory.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_plans([("before: " + before.summary["plan"], _as_asked(before)),
                    ("after: " + after.summary["plan"], _as_asked(after))],
                   round(after.summary["gpu_capacity_gb"] * 1e9), str(path), differences=True,
                   xlabel="", title="Memory per GPU by category: before vs after")
        return path

    def verdict_notes(self, verdict) -> list[str]:
        """Whether the re-computed plan fits, and by how much (the re-run's evidence)."""
        after = verdict.after.summary
        total, cap = after["gpu_total_gb"], after["gpu_capacity_gb"]
        margin = (f"fits, {cap - total:.1f} GB to spare" if total <= cap
                  else f"does not fit, {total - cap:.1f} GB over")
        return [f"Your plan: {total:.1f} GB per GPU of {cap:g} GB: {margin}"]


def as_asked(plan, asked: Strategy):
    """The plan's numbers (what ran) under the job config's strategy (what was asked): how
    every file, label and chart names a plan, so no launcher bug is written into one."""
    return dataclasses.replace(plan, strategy=asked, notes=[])


def _as_asked(result: RunResult):
    return as_asked(result.detail, resolve(result.prepared.config)[2])


def all_params(plan) -> int:
    """All parameters of the model that trains, as PEFT counts them: the base, plus the
    adapters when there are any (a full fine-tune trains the base itself)."""
    return plan.params + (0 if plan.trainable_params == plan.params else plan.trainable_params)


def plan_record(plan, gpu: int) -> dict:
    """plan.json: the plan's numbers (bytes), without the planner's explanations (its 'why'
    sentence and its accounting notes)."""
    record = plan.to_dict(gpu)
    for explanation in ("why", "notes"):
        record.pop(explanation, None)
    return record


def cuda_oom_message(plan, gpu: int) -> str:
    """The error PyTorch's caching allocator would raise for this plan: the job allocates in
    the order a training step does (weights, fp32 master copy, the forward's activations and
    logits, the gradients, the optimizer's state at the first update), one layer's share at a
    time, and the first allocation that does not fit raises."""
    tried, allocated = _failing_allocation(plan, gpu)
    return (f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {_size(tried)}. "
            f"GPU 0 has a total capacity of {_size(gpu)} of which {_size(gpu - allocated)} is "
            f"free. Including non-PyTorch memory, this process has {_size(allocated)} memory in "
            f"use. Of the allocated memory {_size(allocated)} is allocated by PyTorch, and "
            f"0 bytes is reserved by PyTorch but unallocated. If reserved but unallocated memory "
            f"is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
            f"fragmentation.  See documentation for Memory Management  "
            f"(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


_ALLOCATION_ORDER = ("weights", "kv_cache", "master_weights", "gather_buffer", "activations",
                     "logits", "gradients", "optimizer_states")


def _failing_allocation(plan, gpu: int) -> tuple[int, int]:
    """(bytes requested, bytes already allocated) at the first allocation that does not fit."""
    layers = plan.arch.layers if plan.arch is not None else 1
    order = [*_ALLOCATION_ORDER, *(c for c in plan.gpu if c not in _ALLOCATION_ORDER)]
    allocated = 0
    for category in order:
        total = plan.gpu.get(category, 0)
        pieces = 1 if category in ("logits", "gather_buffer") else layers
        chunk = -(-total // pieces) if total else 0
        done = 0
        while done < total:
            size = min(chunk, total - done)
            if allocated + size > gpu:
                return size, allocated
            allocated, done = allocated + size, done + size
    return 0, allocated                         # fits: nothing failed


def _size(n: float) -> str:
    """PyTorch's format_size, in the planner's decimal units (GB = 10^9 bytes)."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.2f} KB"
    return f"{int(n)} bytes"


def _wrap(text: str, indent: str = "", width: int = 96) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False)


def plan_lines(summary: Mapping[str, Any]) -> list[str]:
    """The `plan` probe: what the job's step holds per GPU, by category, in the planner's fixed
    category order, and the parameter count of the model that trains (PEFT's own line)."""
    from ..memplan.accounting import CATEGORIES
    total = summary["gpu_total_gb"] or 1.0
    lines = [*_wrap(f"job config: {summary['strategy']}"),
             f"per-GPU memory of the step: {summary['gpu_total_gb']:.1f} GB of "
             f"{summary['gpu_capacity_gb']:g} GB"
             + (f" (+{summary['cpu_total_gb']:.1f} GB on the CPU)"
                if summary["cpu_total_gb"] else ""),
             f"  {'category':<18}{'per GPU':>11}{'share':>8}"]
    breakdown = summary["breakdown_gb"]
    for category in [*CATEGORIES, *(c for c in breakdown if c not in CATEGORIES)]:
        if breakdown.get(category):
            value = breakdown[category]
            lines.append(f"  {category:<18}{value:>8.2f} GB{100 * value / total:>7.1f}%")
    lines.append(f"  {'total':<18}{summary['gpu_total_gb']:>8.2f} GB")
    trainable, everything = summary["trainable_params"], summary["all_params"]
    lines.append("model.print_trainable_parameters():")
    lines.append(f"  trainable params: {trainable:,d} || all params: {everything:,d} || "
                 f"trainable%: {100 * trainable / everything:.4f}")
    return lines


ENGINE = PlannerEngine()
