"""A run's plots, drawn by a forked process that gets matplotlib ready while this one trains.

`debugsim run` imports torch, trains, then imports matplotlib and draws: one after the other.
With a core to spare (`parallel.available`), `Painter` forks before training: the child
imports matplotlib (half a second) while this process imports torch and trains; then it gets
the finished run's records and draws the engine's plots from them. The images are the ones
drawn here would be (the same function on the same records), and `draw` returns only once
they are written, so a run's artifacts are complete when the command returns.

An engine opts in with `plots_from_records = True`: its plots read only the result's
status, error, records, end, summary and samples (what is sent to the child), never `detail`.
Otherwise, or without a spare core, `draw` draws here.
"""
from __future__ import annotations

from pathlib import Path

from . import parallel
from .engines.base import Prepared


class Painter:
    def __init__(self, prepared: Prepared, out: Path) -> None:
        self._prepared, self._out, self._child = prepared, out, None
        if getattr(prepared.engine, "plots_from_records", False) and parallel.available():
            self._child = parallel.start(_draw, prepared, out, warm=_import_matplotlib,
                                         awaits_input=True)

    def draw(self, result) -> list[Path]:
        """The run's plots, written under out/plots/; their paths."""
        if self._child is None:
            return result.prepared.engine.write_plots(result, self._out)
        child, self._child = self._child, None
        try:
            child.send(result.status, result.error, result.records, result.end,
                       result.summary, result.samples)
            return child.result()
        except BaseException:
            child.cancel()
            raise

    def cancel(self) -> None:
        """No plots after all (the run was interrupted or failed to start)."""
        if self._child is not None:
            self._child.cancel()
            self._child = None


def _import_matplotlib() -> None:
    import importlib
    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg", f"{__package__}.plots"):
        importlib.import_module(module)


def _draw(prepared: Prepared, out: Path, status, error, records, end, summary, samples):
    from .result import RunResult
    result = RunResult(prepared, status, error, records, end, summary, samples, out_dir=out)
    return prepared.engine.write_plots(result, out)
