"""Read a finished run's folder back into a RunResult (for notebooks and later analysis)."""
from __future__ import annotations

import json
from pathlib import Path

from .config import TrainConfig
from .runner import RunResult


def load_run(out_dir) -> RunResult:
    """Everything a RunResult holds except generated samples; the cause stays hidden."""
    out = Path(out_dir)
    header = json.loads((out / "config.json").read_text())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [line for line in lines if line["event"] == "step"]
    end = next((line for line in lines if line["event"] == "end"), {})
    summary = json.loads((out / "summary.json").read_text())
    return RunResult(header["scenario"], header["seed"], None, tuple(header["fixes"]),
                     header["sets"], TrainConfig(**header["config"]), summary["status"],
                     end.get("error"), records, end, summary, out_dir=out)
