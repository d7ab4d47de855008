"""The memory of a planner job as it ran: per-GPU bytes by category, trainable parameters."""
from __future__ import annotations

from ..result import RunResult

NAME = "plan"
ALIASES = ("memory",)
USAGE = "plan"
HELP = ("what the job's step holds per GPU, by category, and its trainable parameters "
        "(`debugsim memory --help` explores more)")
ENGINES = ("planner",)
ORDER = 10                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    from ..engines.planner import ENGINE, plan_lines
    chart = ENGINE.plan_chart(result, plot_dir)
    return "\n".join([*plan_lines(result.summary), f"wrote {chart}"])
