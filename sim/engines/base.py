"""The engine interface, and the prepared run every layer above it passes around.

An engine is how a scenario is executed: `training` re-runs the tiny PyTorch loop (decoding
included), `planner` recomputes an analytic memory plan. A scenario names its engine; nothing
outside `sim/engines/` asks which engine it is. Think of Gymnasium's `make()`: a `Prepared` run
is built once from scenario + seed + cause + fixes + settings, validated, and everything
downstream (execution, grading, probes, plots) takes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from ..scenario import CallbackFactory

if TYPE_CHECKING:
    from ..incidents import Incident
    from ..result import RunResult
    from ..scenario import Scenario


@dataclass(frozen=True)
class RunOptions:
    """How to run, not what: none of these may change a metric."""
    live: bool = False                  # stream a live table to the console
    track_memory: bool | None = None    # None: exactly when the config sets a memory budget


@dataclass(frozen=True)
class Prepared:
    """One validated run: an incident (its cause hidden from learners), the fixes and settings,
    and what the engine built from them."""
    incident: "Incident"
    engine: "Engine"
    fix_ids: tuple[str, ...] = ()
    sets: Mapping[str, Any] = field(default_factory=dict)
    config: Any = None                  # the engine's config (TrainConfig, planner settings)
    callbacks: tuple[CallbackFactory, ...] = ()   # fault and fix code, instantiated per run
    complete: bool = True               # False when rebuilt from a run folder (no fault code)

    @property
    def scenario(self) -> "Scenario":
        return self.incident.scenario

    @property
    def seed(self) -> int:
        return self.incident.seed

    @property
    def cause_id(self) -> str | None:
        return self.incident.cause_id

    def with_fixes(self, fix_ids: Sequence[str] = (),
                   sets: Mapping[str, Any] | None = None) -> "Prepared":
        """The same incident with a (different) set of fixes and settings applied."""
        return self.engine.prepare(self.incident, fix_ids, sets)

    def healthy(self) -> "Prepared":
        """The same incident without its cause (and without fixes)."""
        return self.engine.prepare(self.incident.healthy())

    def header(self) -> dict:
        """What a run folder says about its inputs (never the cause)."""
        return {"scenario": self.scenario.id, "seed": self.seed, "fixes": list(self.fix_ids),
                "sets": dict(self.sets)}

    def cache_key(self) -> tuple:
        """Two prepared runs with equal keys produce identical results."""
        # the scenario object itself (not its id): a scratch scenario may reuse an id
        return (self.engine.name, id(self.scenario), self.engine.config_key(self),
                self.callbacks)


class Engine(Protocol):
    name: str
    working: str          # what play says while the broken run is produced
    rerunning: str        # ... and while the fix is re-run

    def parse_settings(self, pairs: Sequence[str]) -> dict[str, Any]:
        """`key=value` strings to settings; ConfigError (one line) if unusable."""

    def prepare(self, incident: "Incident", fix_ids: Sequence[str] = (),
                sets: Mapping[str, Any] | None = None) -> Prepared:
        """Validate and build a run; ConfigError if the combination cannot run."""

    def config_key(self, prepared: Prepared) -> str:
        """The engine's config as a stable string (for caching)."""

    def settings_of(self, prepared: Prepared) -> dict[str, Any]:
        """The settings a person would read in the run's config file, flat."""

    def execute(self, prepared: Prepared, out_dir: Path | None = None,
                options: RunOptions = RunOptions()) -> "RunResult":
        """Run it; a failure of the run (OOM, NaN) is a result, not an exception."""

    def summary_lines(self, result: "RunResult") -> list[str]:
        """What a person reads after a run."""

    def write_plots(self, result: "RunResult", out_dir: Path) -> list[Path]:
        """The run's standard plots under out_dir/plots/."""

    def evidence_plot(self, before: "RunResult", after: "RunResult", plot_dir: Path) -> Path:
        """Before vs after the fix, for the verdict: a PNG in plot_dir."""

    def verdict_notes(self, verdict) -> list[str]:
        """Engine-specific lines after a verdict (may be empty)."""
