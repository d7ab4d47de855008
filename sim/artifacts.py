"""Read a finished training run's folder back into a RunResult (notebooks, later analysis)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from . import engines, registry
from .config import TrainConfig
from .engines.base import Prepared
from .incidents import Incident
from .result import RunResult

_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def load_run(out_dir) -> RunResult:
    """Everything a RunResult holds except generated samples and the code that ran; the cause
    stays hidden (a run folder never records it)."""
    out = Path(out_dir)
    header = json.loads((out / "config.json").read_text())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [line for line in lines if line["event"] == "step"]
    end = next((line for line in lines if line["event"] == "end"), {})
    summary = json.loads((out / "summary.json").read_text())
    scenario = registry.get(header["scenario"])
    config = TrainConfig(**{k: v for k, v in header["config"].items() if k in _FIELDS})
    incident = Incident(scenario, header["seed"], None, config.seed, changes_shown=False)
    prepared = Prepared(incident, engines.get(scenario.engine), tuple(header["fixes"]),
                        header["sets"], config, complete=False)
    return RunResult(prepared, summary["status"], end.get("error"), records, end, summary,
                     out_dir=out)
