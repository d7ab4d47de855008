"""Plot one per-step signal to a PNG."""
from __future__ import annotations

from .. import signals
from ..result import RunResult
from ._common import ProbeError

NAME = "plot"
USAGE = "plot SIGNAL"
HELP = f"plot one signal to a PNG ({', '.join(signals.names())})"
ENGINES = ("training",)
ORDER = 20                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    from .. import plots
    if not args:
        raise ProbeError("plot what? e.g. 'plot grad_norm'")
    return f"wrote {plots.signal(result, args[0], plot_dir / f'probe_{args[0]}.png')}"
