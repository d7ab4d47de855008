"""`debugsim doctor`: what the catalogue knows, applied to any training log.

    from debugsim.sim import doctor
    diagnosis = doctor.diagnose("runs/x/trainer_state.json")
    diagnosis.findings[0].family, diagnosis.findings[0].causes

It reads the log only (readers.py: debugsim, Hugging Face, CSV, TensorBoard), runs every rule
(rules/), and ranks what fired: failures first, then instabilities, then inefficiencies, by
confidence. It never reads a scenario's cause or answers, even for a debugsim run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .findings import Finding
from .log import TrainingLog
from .readers import SUPPORTED, DoctorError, read
from .rules import RULES

__all__ = ["diagnose", "diagnose_log", "Diagnosis", "Finding", "TrainingLog", "DoctorError",
           "SUPPORTED", "render"]


@dataclass
class Diagnosis:
    log: TrainingLog
    findings: list[Finding] = field(default_factory=list)

    @property
    def top(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict:
        return {"source": self.log.source, "format": self.log.format,
                "steps": len(self.log.steps), "series": sorted(self.log.series),
                "findings": [f.to_dict() for f in self.findings]}


def diagnose_log(log: TrainingLog, floor: float | None = None) -> Diagnosis:
    if floor is not None:
        log.config["floor"] = floor
    found = [finding for rule in RULES if (finding := rule(log)) is not None]
    return Diagnosis(log, sorted(found, key=lambda f: f.rank, reverse=True))


def diagnose(path, floor: float | None = None) -> Diagnosis:
    """Read the log at `path` (a file or a folder holding one) and run every rule."""
    return diagnose_log(read(Path(path)), floor)


def render(diagnosis: Diagnosis) -> list[str]:
    log = diagnosis.log
    lines = [f"doctor: {log.source}", f"  read as {log.summary()}"]
    if not diagnosis.findings:
        lines.append("no finding: no rule fired (non-finite values, memory growth or "
                     "out-of-memory, zero gradients or updates, gradients never cleared or "
                     "cleared on a period, a loss better than the data allows, a held-out loss "
                     "training does not move, gradient spikes or vanishing, loss spikes, "
                     "oscillation, slow progress, a period in the loss, update ratios, a "
                     "rising lr, an RLHF KL penalty of 0, a KL stuck at 0 or past a budget)")
        return lines
    for number, f in enumerate(diagnosis.findings, 1):
        lines += ["", f"{number}. {f.family.replace('_', ' ')}  "
                      f"[confidence {f.confidence_word}, {f.confidence:.2f}; rule {f.rule}]",
                  f"   saw:        {f.what}", f"   where:      {f.where}",
                  f"   threshold:  {f.threshold}",
                  "   likely causes:", *(f"     - {c}" for c in f.causes),
                  "   check next:", *(f"     - {c}" for c in f.checks)]
        if f.trains:
            lines.append("   practise it: " + ", ".join(f"debugsim play {s}" for s in f.trains))
    return lines
