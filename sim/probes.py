"""Probes: what a learner can look at after a run, before naming a cause.

Each probe takes a `RunResult` (from `sim.runner.execute`) and returns plain data (dicts, lists,
floats) that a notebook can use directly; each has a `render_*` companion that turns that data
into text for the terminal:

    log_table(result, start, end, columns)   the per-step records as an aligned table (text)
    layer_grads(result, step)                 per-layer gradient norms at one step
    batch_stats(result, step, micro)          the exact batch the loop saw at a step, measured
    memory_breakdown(result)                  peak memory by category, per-step use, the budget
    lr_range_test(result or config)           the LR finder (Smith 2015), with a suggestion
    anomaly(result)                           replays the first non-finite step and names the op

Probes never raise for a run that failed (out of memory, non-finite values, no steps at all):
such runs answer with a `note`. Bad arguments (a step the run never reached) raise
`ProbeError`, a `ValueError` with a one-line message.

This module imports torch only inside the probes that train or rebuild data, so importing it
stays cheap.
"""
from __future__ import annotations

import dataclasses
import math
import re
import statistics
import warnings
from typing import Any, Sequence

from .runner import RunResult, overflow_skip

NONFINITE_MARK = "NaN!"            # how the table shows a value that was NaN or +-inf


class ProbeError(ValueError):
    """A probe argument that cannot be answered (e.g. a step the run never reached)."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nonfinite_steps(result: RunResult) -> list[int]:
    """Steps with a non-finite loss or gradient, deliberate loss-scaler skips left out."""
    return [r["step"] for r in result.records
            if r.get("nonfinite") and not overflow_skip(r, result.config)]


def _end_note(result: RunResult) -> str:
    """One line on how the run ended, for probes that have nothing else to say."""
    steps = len(result.records)
    if result.status == "oom":
        return f"the run ran out of memory at step {steps}: {result.error}"
    if result.status == "error":
        return f"the run crashed at step {steps}: {result.error}"
    if result.status == "interrupted":
        return f"the run was interrupted after {steps} steps"
    return f"the run completed {steps} steps"


def _record_at(result: RunResult, step: int) -> dict:
    if not result.records:
        raise ProbeError(f"no steps were recorded: {_end_note(result)}")
    first, last = result.records[0]["step"], result.records[-1]["step"]
    if step < 0:
        step = last + 1 + step
    for record in result.records:
        if record["step"] == step:
            return record
    raise ProbeError(f"step {step} is not in this run (recorded steps {first}..{last})")


def _rebuild(result: RunResult, scenario=None):
    """The run's config and fresh instances of its fault/fix callbacks, and a note if the
    callbacks could not be rebuilt (scenario not registered and not given)."""
    from .runner import assemble
    if scenario is None:
        try:
            from . import registry
            scenario = registry.get(result.scenario_id)
        except Exception:
            scenario = None
    if scenario is None:
        if result.cause_id is None and not result.fix_ids:
            return result.config, [], None      # a base run: there are no callbacks to rebuild
        return result.config, [], (f"scenario '{result.scenario_id}' is not registered (pass "
                                   "scenario=...); replayed the config without its callbacks")
    try:
        _, callbacks = assemble(scenario, result.seed, result.cause_id, result.fix_ids,
                                result.sets)
    except Exception as error:
        return result.config, [], f"could not rebuild the run's callbacks ({error})"
    return result.config, callbacks, None


def _untracked(config):
    """Same numerics, no simulated memory accounting (faster; replays never go out of memory)."""
    return dataclasses.replace(config, track_memory=False, memory_budget_mib=0.0)


def _overrides(cls_method_name: str, callback) -> bool:
    from .callbacks import Callback
    return getattr(type(callback), cls_method_name, None) is not getattr(Callback,
                                                                         cls_method_name)


class _Stop(Exception):
    """Raised by a probe's callback to end a replayed run early."""


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return format(value, spec)


# --------------------------------------------------------------------------------------------
# log table
# --------------------------------------------------------------------------------------------

DEFAULT_COLUMNS = ("step", "loss", "grad_norm", "param_norm", "update_ratio", "lr", "nonfinite",
                   "updated", "mem_mib", "mem_peak_mib", "eval_loss", "loss_scale")
_FORMATS = {"step": "d", "loss": ".4f", "eval_loss": ".4f", "grad_norm": ".4g",
            "param_norm": ".4g", "update_ratio": ".3g", "lr": ".3g", "nonfinite": "d",
            "mem_mib": ".2f", "mem_peak_mib": ".2f", "loss_scale": ".4g"}
# fields where None means "was NaN/inf" rather than "not measured this step"
_MEASURED_EVERY_STEP = {"loss", "grad_norm", "param_norm", "update_ratio"}


def _columns(result: RunResult, columns) -> list[str]:
    layers = list(result.records[0].get("layer_grad_norm", {})) if result.records else []
    if columns is None:
        # the defaults, minus the ones this run never measured (eval, loss scale, memory)
        chosen = [c for c in DEFAULT_COLUMNS
                  if c in _MEASURED_EVERY_STEP or c in ("step", "lr", "nonfinite", "updated")
                  or any(r.get(c) is not None for r in result.records)]
        return chosen
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    out = ["step"] if "step" not in columns else []
    for column in columns:
        if column in ("layer_grad_norm", "layers"):
            out.extend(f"layer:{layer}" for layer in layers)
        elif column in layers:
            out.append(f"layer:{column}")
        elif column.startswith("layer:") and column[6:] in layers:
            out.append(column)
        elif result.records and column not in result.records[0]:
            from .config import did_you_mean
            options = [*result.records[0].keys(), *layers]
            raise ProbeError(f"unknown column '{column}'{did_you_mean(column, options)}; "
                             f"choose from {', '.join(k for k in options if k != 'event')}")
        else:
            out.append(column)
    return out


def log_rows(result: RunResult, start: int | None = None, end: int | None = None) -> list[dict]:
    """The records with start <= step <= end (both inclusive; negative counts from the end)."""
    if not result.records:
        return []
    last = result.records[-1]["step"]
    lo = 0 if start is None else (last + 1 + start if start < 0 else start)
    hi = last if end is None else (last + 1 + end if end < 0 else end)
    return [r for r in result.records if lo <= r["step"] <= hi]


def log_table(result: RunResult, start: int | None = None, end: int | None = None,
              columns: Sequence[str] | str | None = None) -> str:
    """The per-step records from `start` to `end` (inclusive; negative = from the end) as an
    aligned text table. `columns` picks fields (any record field, `layer_grad_norm` for every
    layer, or a layer name); a NaN/inf value shows as NaN!, a value not measured as '-'."""
    cols = _columns(result, columns)
    rows = log_rows(result, start, end)
    lines = []
    if not result.records:
        return f"no steps recorded: {_end_note(result)}"
    if not rows:
        return (f"no steps in range {start}..{end} "
                f"(recorded steps {result.records[0]['step']}..{result.records[-1]['step']})")
    table = [[_header(c) for c in cols]]
    any_nonfinite = False
    for record in rows:
        cells = []
        for column in cols:
            if column.startswith("layer:"):
                value = record.get("layer_grad_norm", {}).get(column[6:])
                measured = True
                spec = ".4g"
            else:
                value = record.get(column)
                measured = column in _MEASURED_EVERY_STEP
                spec = _FORMATS.get(column, ".4g")
            if value is None and measured:
                cells.append(NONFINITE_MARK)
                any_nonfinite = True
            elif column == "updated":
                cells.append("yes" if value else "SKIP")
            elif column == "nonfinite" and value:
                cells.append(f"{value}!")
            else:
                cells.append(_fmt(value, spec))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    if any_nonfinite:
        notes.append(f"{NONFINITE_MARK} = NaN or inf")
    if result.status != "completed" and rows[-1] is result.records[-1]:
        notes.append(_end_note(result))
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def _header(column: str) -> str:
    return {"update_ratio": "upd/param", "nonfinite": "nonfin", "mem_mib": "mem MiB",
            "mem_peak_mib": "peak MiB", "eval_loss": "eval", "loss_scale": "scale",
            "param_norm": "param_norm"}.get(column, column.replace("layer:", "g:"))


# --------------------------------------------------------------------------------------------
# per-layer gradients
# --------------------------------------------------------------------------------------------

def layer_grads(result: RunResult, step: int) -> dict:
    """Per-layer gradient L2 norms at `step` (negative counts from the end), the global norm,
    and each layer's norm relative to its median over the run (a spike shows as >> 1)."""
    if not result.records:
        return {"step": None, "layers": {}, "global": None, "note": _end_note(result)}
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


# --------------------------------------------------------------------------------------------
# batch statistics
# --------------------------------------------------------------------------------------------

def rebuild_batch(result: RunResult, step: int, micro: int = 0, scenario=None):
    """The exact batch the loop trained on at (`step`, `micro`): the data stream's batch, passed
    through the run's batch-changing callbacks. Returns (batch, note-or-None)."""
    from .data import make_stream

    config, callbacks, note = _rebuild(result, scenario)
    changers = [c for c in callbacks if _overrides("on_batch", c)]
    if not changers:
        return make_stream(config).batch(step, micro), note
    # A callback changes batches: replay the run up to that micro-batch so any state the
    # callback keeps (counters, RNG) is exactly what it was.
    from .callbacks import Callback
    from .loop import train

    class Capture(Callback):
        """Keeps the batch of (step, micro) as the later callbacks would see it, then stops."""

        def __init__(self) -> None:
            self.batch, self.seen = None, 0

        def on_step_start(self, run) -> None:
            self.seen = 0

        def on_batch(self, run, batch):
            if run.step == step and self.seen == micro:
                self.batch = batch
                raise _Stop
            self.seen += 1
            return None

    capture = Capture()
    try:
        train(dataclasses.replace(_untracked(config), steps=max(config.steps, step + 1)),
              [*callbacks, capture])
    except _Stop:
        pass
    return capture.batch, note


def batch_stats(result: RunResult, step: int, micro: int = 0, scenario=None) -> dict:
    """Measure the batch the loop saw at `step` (micro-batch `micro`): non-finite values,
    sequence lengths, padding, supervised tokens, label range and padding side."""
    import torch
    from .data import IGNORE, PAD

    config = result.config
    if step < 0:
        if not result.records:
            raise ProbeError(f"no steps were recorded: {_end_note(result)}")
        step = result.records[-1]["step"] + 1 + step
    if not 0 <= micro < config.grad_accum_steps:
        raise ProbeError(f"micro={micro}: this run has {config.grad_accum_steps} micro-batch(es) "
                         f"per step (0..{config.grad_accum_steps - 1})")
    batch, note = rebuild_batch(result, step, micro, scenario)
    if batch is None:
        return {"step": step, "micro": micro, "note": note or "the batch could not be rebuilt"}
    tokens, targets = batch.tokens, batch.targets
    padding = batch.key_padding if batch.key_padding is not None else tokens == PAD
    rows, width = tokens.shape
    lengths = (~padding).sum(1)
    supervised = targets != IGNORE
    per_row = supervised.sum(1)
    labels = targets[supervised]
    nonfinite = {}
    for name, tensor in (("tokens", tokens), ("targets", targets)):
        nonfinite[name] = int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0
    sides = []
    for i in range(rows):
        if not padding[i].any():
            continue
        sides.append("left" if padding[i, 0] else "right" if padding[i, -1] else "middle")
    side = "none" if not sides else sides[0] if len(set(sides)) == 1 else "mixed"
    # padding positions that are supervised: a label on a padding input is a collation bug
    supervised_padding = int((supervised & padding).sum())
    empty_rows = [i for i in range(rows) if per_row[i] == 0]
    stats = {
        "step": step, "micro": micro, "rows": rows, "seq_len": width,
        "nonfinite": nonfinite,
        "lengths": {"min": int(lengths.min()), "mean": float(lengths.float().mean()),
                    "max": int(lengths.max())},
        "padding_share": float(padding.float().mean()),
        "padding_side": side, "config_padding_side": config.padding_side if config.data == "sft"
        else None,
        "supervised_tokens": int(supervised.sum()),
        "supervised_share": float(supervised.float().mean()),
        "supervised_per_row": {"min": int(per_row.min()), "mean": float(per_row.float().mean()),
                               "max": int(per_row.max())},
        "rows_without_supervision": len(empty_rows),
        "rows_without_supervision_idx": empty_rows[:16],
        "label_min": int(labels.min()) if labels.numel() else None,
        "label_max": int(labels.max()) if labels.numel() else None,
        "labels_out_of_range": int(((labels < 0) | (labels >= config.vocab_size)).sum()),
        "token_min": int(tokens.min()), "token_max": int(tokens.max()),
        "vocab_size": config.vocab_size,
        "supervised_padding_positions": supervised_padding,
        "first_row": tokens[0].tolist(), "first_row_targets": targets[0].tolist(),
        "in_run": bool(result.records) and step <= result.records[-1]["step"],
    }
    if note:
        stats["note"] = note
    return stats


def render_batch_stats(stats: dict) -> str:
    if "rows" not in stats:
        return f"batch at step {stats.get('step')}: {stats.get('note')}"
    s = stats
    lines = [f"batch at step {s['step']}, micro-batch {s['micro']}: {s['rows']} rows x "
             f"{s['seq_len']} tokens" + ("" if s["in_run"] else "  (the run stopped before "
                                         "this step; this is the batch it would have seen)")]
    lines.append(f"  non-finite values      tokens {s['nonfinite']['tokens']}, "
                 f"targets {s['nonfinite']['targets']}")
    lines.append(f"  sequence length        min {s['lengths']['min']}, mean "
                 f"{s['lengths']['mean']:.1f}, max {s['lengths']['max']} (non-padding tokens)")
    side = s["padding_side"]
    if s["config_padding_side"] and side not in ("none", s["config_padding_side"]):
        side += f" (config says {s['config_padding_side']})"
    lines.append(f"  padding                {s['padding_share']:.1%} of positions, side: {side}")
    lines.append(f"  supervised tokens      {s['supervised_tokens']} "
                 f"({s['supervised_share']:.1%}); per row min {s['supervised_per_row']['min']}, "
                 f"mean {s['supervised_per_row']['mean']:.1f}, "
                 f"max {s['supervised_per_row']['max']}")
    flag = "  <-- a loss averaged over this batch's tokens divides by this" \
        if s["supervised_tokens"] == 0 else ""
    empty = s["rows_without_supervision"]
    which = ("" if not empty else " (all rows)" if empty == s["rows"] else
             f" (rows {', '.join(map(str, s['rows_without_supervision_idx']))}"
             + (", ..." if empty > len(s["rows_without_supervision_idx"]) else "") + ")")
    lines.append(f"  rows with no labels    {empty}{which}{flag}")
    if s["label_min"] is None:
        lines.append("  label range            none: no supervised tokens")
    else:
        lines.append(f"  label range            {s['label_min']}..{s['label_max']} (vocab "
                     f"0..{s['vocab_size'] - 1}; {s['labels_out_of_range']} out of range)")
    lines.append(f"  token range            {s['token_min']}..{s['token_max']}")
    if s["supervised_padding_positions"]:
        lines.append(f"  labels on padding      {s['supervised_padding_positions']} positions")
    lines.append(f"  row 0 tokens           {s['first_row']}")
    lines.append(f"  row 0 targets          {['-' if t == -100 else t for t in s['first_row_targets']]}"
                 .replace("'-'", "-"))
    if s.get("note"):
        lines.append(f"  note: {s['note']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------

def memory_breakdown(result: RunResult) -> dict:
    """Peak memory by category (from the end record), memory in use after each step and each
    step's peak, the step that peaked, and the budget."""
    config = result.config
    tracked = bool(config.track_memory)
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
        report["note"] = "memory was not tracked in this run (track_memory=false)"
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


# --------------------------------------------------------------------------------------------
# learning-rate range test
# --------------------------------------------------------------------------------------------

def lr_range_test(source, start_lr: float = 1e-5, end_lr: float = 10.0, steps: int = 50,
                  beta: float = 0.9, diverge: float = 4.0, scenario=None) -> dict:
    """The learning-rate range test (Smith 2015, fastai's `lr_find`): train a fresh model while
    the learning rate grows exponentially from `start_lr` to `end_lr`, one step each, recording
    the loss smoothed by an exponential moving average (with bias correction); stop once the
    smoothed loss exceeds `diverge` x its best. The suggestion is the lr of steepest descent of
    the smoothed loss (against log lr); `min_lr / 10` is reported too.

    `source` is a RunResult (its scenario's base config plus the run's own `sets` is swept:
    not the hidden cause's faults, not the fixes), a Scenario (its base config) or a
    TrainConfig (used as is). Warmup, schedule and clipping are turned off; memory is not
    tracked. Smoothing: beta=0.9 (about a 10-step window) suits a ~50-step sweep; fastai's
    0.98 assumes ~100 steps and would lag the blow-up.
    """
    import numpy as np
    from .callbacks import Callback
    from .loop import train

    if not 0 < start_lr < end_lr or steps < 3:
        raise ProbeError(f"lr_range_test needs 0 < start_lr < end_lr and steps >= 3 "
                         f"(got {start_lr:g}, {end_lr:g}, {steps})")
    config, note = _lr_test_config(source, scenario)
    config = dataclasses.replace(_untracked(config), steps=steps, warmup_steps=0,
                                 schedule="constant", grad_clip=0.0, eval_every=0,
                                 skip_nonfinite=False)
    lrs_planned = start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(steps - 1, 1))

    class Sweep(Callback):
        def __init__(self):
            self.lrs, self.losses, self.smoothed = [], [], []
            self.avg, self.best = 0.0, float("inf")
            self.stopped = "reached end_lr"

        def on_step_start(self, run):
            run.lr = float(lrs_planned[run.step])
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr

        def on_after_backward(self, run):
            # the loss of this step, measured before the update it causes
            loss = run.loss
            self.lrs.append(run.lr)
            self.losses.append(loss)
            if not math.isfinite(loss):
                self.smoothed.append(float("nan"))
                self.stopped = "loss became non-finite"
                run.control.skip_update = True
                run.control.stop = True
                return
            self.avg = beta * self.avg + (1 - beta) * loss
            smooth = self.avg / (1 - beta ** len(self.losses))
            self.smoothed.append(smooth)
            self.best = min(self.best, smooth)
            if len(self.losses) > 1 and smooth > diverge * self.best:
                self.stopped = f"smoothed loss exceeded {diverge:g}x its best"
                run.control.stop = True

    sweep = Sweep()
    train(config, [sweep])
    lrs = np.array(sweep.lrs)
    smoothed = np.array(sweep.smoothed)
    report = {"lrs": lrs, "losses": np.array(sweep.losses, dtype=float), "smoothed": smoothed,
              "stopped": sweep.stopped, "config": config, "beta": beta,
              "start_lr": start_lr, "end_lr": end_lr}
    finite = np.isfinite(smoothed)
    if finite.sum() >= 3:
        idx = np.flatnonzero(finite)
        best = idx[np.argmin(smoothed[idx])]
        report["min_lr"] = float(lrs[best])
        # steepest descent before the minimum, against log10(lr)
        upto = idx[idx <= best]
        if len(upto) >= 3:
            slopes = np.gradient(smoothed[upto], np.log10(lrs[upto]))
            steep = upto[int(np.argmin(slopes))]
            report["steepest_lr"] = float(lrs[steep])
            report["steepest_slope"] = float(slopes.min())
        else:
            report["steepest_lr"] = float(lrs[best]) / 10
        report["suggested_lr"] = report["steepest_lr"]
        report["min_over_10_lr"] = report["min_lr"] / 10
    else:
        report["suggested_lr"] = None
        report["note"] = "the loss diverged almost immediately; start the sweep lower"
    if note:
        report["note"] = note if "note" not in report else report["note"] + "; " + note
    return report


def _lr_test_config(source, scenario=None):
    from .config import TrainConfig
    from .scenario import Scenario
    if isinstance(source, TrainConfig):
        return source, None
    if isinstance(source, Scenario):
        return source.base_config(0), None
    if isinstance(source, RunResult):
        if scenario is None:
            try:
                from . import registry
                scenario = registry.get(source.scenario_id)
            except Exception:
                scenario = None
        if scenario is None:
            return source.config, (f"scenario '{source.scenario_id}' is not registered; "
                                   "swept the run's own config")
        from .config import with_overrides
        return with_overrides(scenario.base_config(source.seed), source.sets or {}), None
    raise TypeError(f"lr_range_test needs a RunResult, Scenario or TrainConfig, "
                    f"not {type(source).__name__}")


def render_lr_range_test(report: dict) -> str:
    lrs, smoothed = report["lrs"], report["smoothed"]
    lines = [f"LR range test: {len(lrs)} steps, lr {report['start_lr']:.0e} -> "
             f"{lrs[-1] if len(lrs) else report['start_lr']:.3g} ({report['stopped']})"]
    if report.get("suggested_lr") is not None:
        lines.append(f"  lowest smoothed loss {min(s for s in smoothed if s == s):.3f} "
                     f"at lr {report['min_lr']:.3g}")
        lines.append(f"  steepest descent at lr {report['steepest_lr']:.3g}; "
                     f"min/10 = {report['min_over_10_lr']:.3g}")
        lines.append(f"  suggested lr: {report['suggested_lr']:.3g}")
    if report.get("note"):
        lines.append(f"  note: {report['note']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# anomaly detection
# --------------------------------------------------------------------------------------------

_BACKWARD_RE = re.compile(r"Function '(\w+)' returned nan values in its (\d+)\w* output")


def anomaly(result: RunResult, scenario=None, step: int | None = None) -> dict:
    """Replay the run to its first step with a non-finite loss or gradient, then recompute that
    step's forward and backward under `torch.autograd.detect_anomaly(check_nan=True)` while
    watching every operator: name the op that first produced a NaN (and the one that first
    produced an inf), the module it ran in, whether the forward loss was already non-finite,
    and the backward Function that anomaly mode flags.

    `scenario` is needed only if the run's scenario is not in the registry (the fault callbacks
    are rebuilt from it). `step` replays a chosen step instead of the first non-finite one.
    """
    bad = nonfinite_steps(result)
    if step is None and not bad:
        note = ("no non-finite step in this run" if result.records
                else "no steps were recorded")
        return {"found": False, "step": None, "note": f"{note}; {_end_note(result)}"}
    target = bad[0] if step is None else step
    from .callbacks import Callback
    from .loop import train

    config, callbacks, note = _rebuild(result, scenario)
    replay = dataclasses.replace(_untracked(config), steps=max(config.steps, target + 1))
    loss_scale_skip = config.precision == "fp16" and config.loss_scale == "dynamic"

    class Halt(Callback):
        """Stops the replay after the backward of the target step, before its update."""
        def __init__(self) -> None:
            self.run, self.batches = None, []

        def on_step_start(self, run):
            self.batches = []

        def on_batch(self, run, batch):
            self.batches.append(batch)      # after the fault callbacks: what the model saw

        def on_after_backward(self, run):
            bad_now = not math.isfinite(run.loss) or not run.grads_finite
            if loss_scale_skip and math.isfinite(run.loss):
                bad_now = False             # a deliberate overflow skip of the loss scaler
            if run.step == target or (step is None and bad_now):
                self.run = run
                raise _Stop

    halt = Halt()
    try:
        train(replay, [*callbacks, halt])
    except _Stop:
        pass
    except Exception as error:
        return {"found": False, "step": target, "note": f"the replay failed: {error}"}
    run = halt.run
    if run is None:
        return {"found": False, "step": target,
                "note": f"the replay reached no non-finite step (expected step {target})"}
    report = _replay_step(run, halt.batches, callbacks)
    report.update(_context(result, run))
    report["step"] = run.step
    report["recorded_first_nonfinite"] = bad[0] if bad else None
    if note:
        report["note"] = note
    return report


def _replay_step(run, batches, callbacks) -> dict:
    """Recompute one step's micro-batches under anomaly mode and the non-finite op watcher."""
    import torch
    from .callbacks import CallbackList
    from .loop import autocast_for, loss_scale_of, token_loss

    config, model = run.config, run.model
    hooks = CallbackList(callbacks)
    names = {module: name for name, module in model.named_modules()}
    watcher = _NonFiniteWatcher()
    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(
            lambda m, args, name=name: watcher.stack.append(name or "model")))
        handles.append(module.register_forward_hook(
            lambda m, args, out, name=name: watcher.leave(name or "model", args, out)))
    params_nonfinite = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    max_abs_param = max(float(p.detach().abs().max()) for p in model.parameters())
    scale = loss_scale_of(config)
    report: dict[str, Any] = {"found": True, "params_nonfinite_before": params_nonfinite,
                              "max_abs_param": max_abs_param}
    model.zero_grad(set_to_none=True)
    try:
        for micro, batch in enumerate(batches):
            watcher.reset()
            watcher.phase = "forward"
            captured = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with torch.autograd.detect_anomaly(check_nan=True):
                    with watcher:
                        with autocast_for(config):
                            logits = model(batch.tokens, batch.key_padding)
                            watcher.stack.append("the loss computation")
                            loss_sum, n_tokens = token_loss(logits, batch.targets)
                            loss = loss_sum / n_tokens.clamp(min=1)
                            loss = hooks.loss(run, loss_sum, n_tokens, loss)
                            watcher.stack.pop()
                        forward_loss = float(loss.detach())
                        watcher.phase = "backward"
                        scaled = loss / config.grad_accum_steps
                        if run.scaler is not None:
                            scaled = scaled * run.scaler.get_scale()
                        elif scale is not None:
                            scaled = scaled * scale
                        try:
                            scaled.backward()
                        except RuntimeError as error:
                            captured.append(str(error))
                warning_text = [str(w.message) for w in caught
                                if "Error detected in" in str(w.message)]
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grads_finite = all(bool(torch.isfinite(g).all()) for g in grads)
            if (math.isfinite(forward_loss) and grads_finite and not captured
                    and micro < len(batches) - 1):
                continue                    # this micro-batch was fine; the next one is not
            report.update({
                "micro": micro,
                "forward_loss": forward_loss,
                "forward_nonfinite": not math.isfinite(forward_loss),
                "n_tokens": int(n_tokens),
                "grads_finite": grads_finite,
                "first_nan": watcher.first_nan,
                "first_inf": watcher.first_inf,
                "first_nonfinite_module": watcher.first_module,
                "backward_function": None, "backward_output": None,
                "forward_traceback": None,
            })
            for message in captured:
                match = _BACKWARD_RE.search(message)
                if match:
                    report["backward_function"] = match.group(1)
                    report["backward_output"] = int(match.group(2))
                else:
                    report["backward_error"] = message
            if warning_text:
                report["forward_traceback"] = _user_frames(warning_text[0])
            break
    finally:
        for handle in handles:
            handle.remove()
    report["culprit"] = _culprit(report)
    return report


class _NonFiniteWatcher:
    """A dispatch mode that notes the first op whose output holds a NaN (inf) while none of its
    inputs does: the op that created it, not one that merely passed it on."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.phase = "forward"
        self.reset()

    def reset(self) -> None:
        self.first_nan = self.first_inf = self.first_module = None
        self.stack = []
        self.ops = 0                    # ops seen so far: orders the first NaN and first inf

    def leave(self, name: str, args, out) -> None:
        """Forward hook: note the first module whose output is non-finite while its inputs
        were finite (the module that produced it, not one that passed it on)."""
        import torch
        from torch.utils._pytree import tree_leaves
        if self.stack and self.stack[-1] == name:
            self.stack.pop()
        if self.first_module is not None:
            return
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if outs and not all(bool(torch.isfinite(t).all()) for t in outs):
            ins = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor)
                   and t.is_floating_point()]
            if all(bool(torch.isfinite(t).all()) for t in ins):
                self.first_module = name

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        watcher = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                watcher.inspect(func, args, kwargs or {}, out)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)

    def inspect(self, func, args, kwargs, out) -> None:
        import torch
        from torch.utils._pytree import tree_leaves
        self.ops += 1
        if self.first_nan is not None and self.first_inf is not None:
            return
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)
                and t.is_floating_point()]
        if not outs:
            return
        out_nan = any(bool(torch.isnan(t).any()) for t in outs)
        out_inf = any(bool(torch.isinf(t).any()) for t in outs)
        if not (out_nan or out_inf):
            return
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
               and t.is_floating_point()]
        scalars = [v for v in tree_leaves((args, kwargs)) if isinstance(v, float)]
        in_nan = any(bool(torch.isnan(t).any()) for t in ins) or any(v != v for v in scalars)
        in_inf = any(bool(torch.isinf(t).any()) for t in ins) or any(
            math.isinf(v) for v in scalars)
        where = {"op": _op_name(func), "phase": self.phase,
                 "module": self.stack[-1] if self.stack else
                 ("the backward pass" if self.phase == "backward" else "outside the model"),
                 "inputs_had_inf": in_inf, "index": self.ops,
                 "dtype": str(outs[0].dtype).replace("torch.", "")}
        if (out_nan and not in_nan and self.first_nan is None) or (
                out_inf and not in_inf and not in_nan and self.first_inf is None):
            where["detail"] = _op_detail(where["op"], [
                t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)],
                overflow=out_inf and not in_inf and not in_nan, dtype=outs[0].dtype)
        if out_nan and not in_nan and self.first_nan is None:
            self.first_nan = where
        if out_inf and not in_inf and not in_nan and self.first_inf is None:
            self.first_inf = where


def _op_detail(op: str, inputs, overflow: bool = False, dtype=None) -> str:
    """What about an op's inputs made it produce a non-finite value, in words."""
    import torch
    if not inputs:
        return ""
    floats = [t for t in inputs if t.is_floating_point()]
    x = inputs[0] if inputs[0].is_floating_point() else inputs[0].float()
    if "softmax" in op:
        rows = x.reshape(-1, x.shape[-1]) if x.dim() else x.reshape(1, 1)
        dead = int(torch.isneginf(rows).all(-1).sum())
        if dead:
            return f"{dead} of {rows.shape[0]} input rows were entirely -inf (nothing to attend to)"
    if op.startswith("aten.div") and len(inputs) >= 2:
        num, den = inputs[0], inputs[1]
        try:
            both = int(((num == 0) & (den == 0)).sum())
        except RuntimeError:                # shapes that do not broadcast: skip the 0/0 count
            both = 0
        if both:
            return f"0 / 0 in {both} element(s)"
        zeros = int((den == 0).sum())
        if zeros:
            return f"the divisor was 0 in {zeros} element(s)"
    if op.startswith("aten.log") and "softmax" not in op and int((x <= 0).sum()):
        return f"{int((x <= 0).sum())} input(s) <= 0"
    if "sqrt" in op and int((x < 0).sum()):
        return f"{int((x < 0).sum())} negative input(s)"
    finite = [t[torch.isfinite(t)] for t in floats]
    finite = [t for t in finite if t.numel()]
    largest = max(float(t.abs().max()) for t in finite) if finite else None
    if overflow and dtype is not None and dtype.is_floating_point:
        return (f"overflow: {str(dtype).replace('torch.', '')} holds at most "
                f"{torch.finfo(dtype).max:.3g}"
                + (f"; largest |input| {largest:.3g}" if largest is not None else ""))
    return f"largest |input| {largest:.3g}" if largest is not None else ""


def _op_name(func) -> str:
    name = str(func)                    # e.g. "aten._softmax.default"
    return name[:-len(".default")] if name.endswith(".default") else name


def _user_frames(text: str) -> list[str]:
    """The project's own frames from anomaly mode's forward traceback, innermost last."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s+(.+)', text)
    keep = [f"{path.rsplit('/', 1)[-1]}:{line} in {fn}: {code.strip()}"
            for path, line, fn, code in frames
            if ("/sim/" in path or "/scenarios/" in path) and not path.endswith("probes.py")]
    return keep[-4:]


def _culprit(report: dict) -> str | None:
    """One phrase naming where the first non-finite value came from: the earlier of the op that
    first made an inf (an overflow) and the op that first made a NaN."""
    if report.get("params_nonfinite_before"):
        return "parameters were already non-finite before this step (an earlier update)"
    events = [(e["index"], kind, e) for kind, e in (("NaN", report.get("first_nan")),
                                                     ("inf", report.get("first_inf"))) if e]
    if events:
        _, kind, e = min(events, key=lambda item: item[0])
        where = f" in {_module_words(e['module'])}" if e["phase"] == "forward" else ""
        what = "overflow to inf" if kind == "inf" else "NaN"
        return f"{e['op']}{where} ({e['phase']}, {what})"
    if report.get("backward_function"):
        return f"{report['backward_function']} (backward)"
    return None


def _module_words(module: str) -> str:
    """'blocks.0.attn' -> "module 'blocks.0.attn'"; descriptive names stay as they are."""
    return module if " " in module else f"module '{module}'"


def _context(result: RunResult, run) -> dict:
    """What the records say about the steps leading up to it (for an exploding run)."""
    before = [r for r in result.records if r["step"] < run.step]
    context: dict[str, Any] = {"lr": run.lr}
    norms = [r.get("param_norm") for r in before]
    if norms and _finite(norms[0]) and _finite(norms[-1]):
        context["param_norm_start"] = norms[0]
        context["param_norm_before"] = norms[-1]
    ratios = [r.get("update_ratio") for r in before if _finite(r.get("update_ratio"))]
    if ratios:
        context["max_update_ratio_before"] = max(ratios)
    grads = [r.get("grad_norm") for r in before if _finite(r.get("grad_norm"))]
    if grads:
        context["max_grad_norm_before"] = max(grads)
    return context


def render_anomaly(report: dict) -> str:
    if not report.get("found"):
        return f"anomaly detection: {report.get('note')}"
    r = report
    lines = [f"anomaly detection at step {r['step']}"
             + (f", micro-batch {r['micro']}" if r.get("micro") else "")
             + f" (lr {_fmt(r.get('lr'), '.3g')})"]
    lines.append(f"  forward loss: {_fmt(r.get('forward_loss'))}"
                 + ("  <-- already non-finite before backward" if r.get("forward_nonfinite")
                    else "") + f"  (supervised tokens: {r.get('n_tokens')})")
    if r.get("params_nonfinite_before"):
        lines.append(f"  parameters already non-finite before this step: "
                     f"{', '.join(r['params_nonfinite_before'][:6])}")
    lines.append(f"  largest |parameter|: {_fmt(r.get('max_abs_param'))}")
    if "param_norm_start" in r:
        lines.append(f"  parameter norm: {_fmt(r['param_norm_start'])} at step 0 -> "
                     f"{_fmt(r['param_norm_before'])} just before; largest update/param ratio "
                     f"{_fmt(r.get('max_update_ratio_before'), '.3g')}")
    events = sorted((r[key]["index"], key) for key in ("first_inf", "first_nan") if r.get(key))
    for _, key in events:
        where, label = r[key], "first inf made by" if key == "first_inf" else "first NaN made by"
        if where:
            place = ("" if where["phase"] == "backward"
                     else f" in {_module_words(where['module'])}")
            lines.append(f"  {label:<18} {where['op']}{place} ({where['phase']})"
                         + (f": {where['detail']}" if where.get("detail") else ""))
    if r.get("first_nonfinite_module"):
        lines.append(f"  first module to turn finite inputs into a non-finite output: "
                     f"{r['first_nonfinite_module']}")
    if r.get("backward_function"):
        lines.append(f"  anomaly mode: Function '{r['backward_function']}' returned nan values "
                     f"in its {r['backward_output']}th output"
                     + (" (the backward only carries the forward's NaN back)"
                        if r.get("forward_nonfinite") else ""))
    elif r.get("backward_error"):
        lines.append(f"  anomaly mode: {r['backward_error']}")
    else:
        lines.append("  anomaly mode: no backward Function returned NaN")
    if r.get("forward_traceback"):
        lines.append("  forward call of that Function:")
        lines.extend(f"    {frame}" for frame in r["forward_traceback"])
    if r.get("culprit"):
        lines.append(f"  => first non-finite value: {r['culprit']}")
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    return "\n".join(lines)
