"""Per-step telemetry: the Recorder callback, and the files it streams to.

`metrics.jsonl` holds a header, one object per step and an end record; it depends only on the
scenario, cause, fix and seed, so the same inputs give a byte-identical file. Wall-clock figures
(step time, throughput) go to `timings.jsonl`. Both files are written to `*.part` and renamed
into place when the run ends, crashes or is interrupted, so a reader never sees a torn file.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from .callbacks import Callback
from .device import MiB
from .files import json_text
from .signals import MEASURED


FORMAT_VERSION = 1


def clean(value):
    """JSON-safe numbers: 6 significant digits, None for NaN/inf (counted in `nonfinite`)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: clean(v) for key, v in value.items()}
    return value


class JsonlFile:
    """Appends one JSON object per line to `path.part`; `close` renames it to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".part")
        self.handle = open(self.partial, "w", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.handle.write(json_text(obj, separators=(",", ":")) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()
            os.replace(self.partial, self.path)


class Recorder(Callback):
    """Measures every step; keeps the records in memory and streams them to files if given."""

    def __init__(self, header: dict | None = None, out_dir: Path | None = None) -> None:
        self.header = header or {}
        self.records: list[dict] = []
        self.timings: list[dict] = []
        self.out_dir = Path(out_dir) if out_dir else None
        self._metrics = self._timing = None
        self.first_nonfinite_step: int | None = None

    # --- events -----------------------------------------------------------------------
    def on_run_start(self, run) -> None:
        if self.out_dir:
            self._metrics = JsonlFile(self.out_dir / "metrics.jsonl")
            self._timing = JsonlFile(self.out_dir / "timings.jsonl")
            self._metrics.write({"event": "header", "format_version": FORMAT_VERSION,
                                 **self.header, "config": run.config.recipe_dict()})
        self._t0 = time.perf_counter()
        index = {id(p): i for i, p in enumerate(run.model.parameters())}
        self._groups = {name: [index[id(p)] for p in params]
                        for name, params in run.model.layer_groups().items()}

    def on_step_start(self, run) -> None:
        self._step_t0 = time.perf_counter()

    def on_after_backward(self, run) -> None:
        # per-parameter gradient norms come from the loop (it needs them for the global norm)
        self._layer_norms = {
            name: math.sqrt(sum(run.param_grad_norms[i] ** 2 for i in indices
                                if run.param_grad_norms[i] is not None))
            for name, indices in self._groups.items()
            if any(run.param_grad_norms[i] is not None for i in indices)}
        nonfinite = 0
        if not run.grads_finite:          # count elements only when something is off
            with run.device.untracked(), torch.no_grad():
                nonfinite = sum(int((~torch.isfinite(p.grad)).sum())
                                for p in run.model.parameters() if p.grad is not None)
        self._nonfinite = nonfinite + (0 if math.isfinite(run.loss) else 1)

    def on_before_update(self, run) -> None:
        with run.device.untracked(), torch.no_grad():
            self._before = torch._foreach_mul(list(run.model.parameters()), 1.0)   # a copy

    def on_step_end(self, run) -> None:
        with run.device.untracked(), torch.no_grad():
            params = list(run.model.parameters())
            deltas = torch._foreach_sub(params, self._before)
            norms = torch.stack([*torch._foreach_norm(params), *torch._foreach_norm(deltas)])
            squares = (norms.double() ** 2).tolist()
        param_norm = math.sqrt(sum(squares[:len(params)]))
        update_norm = math.sqrt(sum(squares[len(params):]))
        if self._nonfinite and self.first_nonfinite_step is None:
            self.first_nonfinite_step = run.step
        record = clean({
            "event": "step", "step": run.step, "loss": run.loss, "grad_norm": run.grad_norm,
            "layer_grad_norm": self._layer_norms, "param_norm": param_norm,
            "update_ratio": update_norm / param_norm if param_norm > 0 else float("nan"),
            "lr": run.lr, "nonfinite": self._nonfinite, "updated": run.updated,
            "mem_mib": run.device.in_use / MiB if run.device.enabled else None,
            "mem_peak_mib": run.device.step_peak / MiB if run.device.enabled else None,
            "eval_loss": run.eval_loss, "loss_scale": run.loss_scale,
            **self._measured(run),
        })
        self.records.append(record)
        run.record = record                   # for callbacks after this one (the live table)
        elapsed = time.perf_counter() - self._step_t0
        timing = {"step": run.step, "seconds": round(elapsed, 6),
                  "tokens_per_s": round(run.config.tokens_per_step / elapsed, 1) if elapsed else None}
        self.timings.append(timing)
        if self._metrics:
            self._metrics.write(record)
            self._timing.write(timing)

    @staticmethod
    def _measured(run) -> dict:
        """The signals that bring their own measurement, where they measured something."""
        values = ((signal.name, signal.measure(run)) for signal in MEASURED)
        return {name: value for name, value in values if value is not None}

    def on_run_end(self, run) -> None:
        device = run.device
        self.end = clean({
            "event": "end", "status": run.status, "steps_completed": len(self.records),
            "error": run.error, "peak_mib": device.peak / MiB if device.enabled else None,
            "peak_breakdown_mib": {k: v / MiB for k, v in device.peak_breakdown.items()}
            if device.enabled else None,
            "first_nonfinite_step": self.first_nonfinite_step,
        })
        if self._metrics:
            self._metrics.write(self.end)
            self._timing.write({"event": "end",
                                "seconds": round(time.perf_counter() - self._t0, 6)})
            self._metrics.close()
            self._timing.close()
