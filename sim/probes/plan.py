"""The memory plan of a planner run: per-GPU memory by category, and the verdict."""
from __future__ import annotations

from ..result import RunResult

NAME = "plan"
ALIASES = ("memory",)
USAGE = "plan"
HELP = "the per-GPU memory breakdown of the plan (`debugsim memory --help` explores more)"
ENGINES = ("planner",)
ORDER = 10                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    from ..engines.planner import ENGINE, plan_lines
    chart = ENGINE.plan_chart(result, plot_dir)
    return "\n".join([*plan_lines(result.summary), f"wrote {chart}"])
