"""What a rule reports: one finding, in the terms a learner can act on."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# How bad each family is, when several fire: a run that failed outranks one that is slow.
SEVERITY = {"failure": 3, "instability": 2, "inefficiency": 1}


@dataclass(frozen=True)
class Finding:
    rule: str                  # the rule's name
    family: str                # the cause family it names (divergence, memory_leak, ...)
    what: str                  # what it saw, with numbers
    where: str                 # which steps
    confidence: float          # 0..1
    threshold: str             # the rule's thresholds, stated
    causes: tuple[str, ...]    # likely causes
    checks: tuple[str, ...]    # what to check next
    trains: tuple[str, ...] = field(default=())   # debugsim scenarios that train it
    severity: str = "instability"

    @property
    def rank(self) -> tuple:
        return (SEVERITY[self.severity], self.confidence)

    @property
    def confidence_word(self) -> str:
        return "high" if self.confidence >= 0.8 else "medium" if self.confidence >= 0.5 else "low"

    def to_dict(self) -> dict:
        return {**asdict(self), "confidence_word": self.confidence_word}
