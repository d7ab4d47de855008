"""Strategy combinations that would make a planner job fit, cheapest in quality and speed first.

A what-if in the planner's arithmetic, worked from the job config (what the team asked for),
like `debugsim memory` run on that config: it knows nothing of how the job was launched."""
from __future__ import annotations

from ..result import RunResult
from ._common import int_arg

NAME = "strategies"
USAGE = "strategies [N]"
HELP = ("the planner's estimate for the job config: the N cheapest strategy combinations "
        "that fit the GPU, with their cost (default 5)")
ENGINES = ("planner",)
ORDER = 20                      # place in the help list


def ranked(result: RunResult, count: int = 5) -> list[dict]:
    """The cheapest fitting combinations, starting from the job config's strategy."""
    from ..engines.planner import resolve
    from ..memplan.strategies import OPTION_COSTS, rank_strategies
    model, gpu, strategy = resolve(result.prepared.config)
    return [{"label": r.label, "cost": r.cost, "gpu_total_gb": r.plan.gpu_total / 1e9,
             "why": [OPTION_COSTS[o][1] for o in r.options if o in OPTION_COSTS]}
            for r in rank_strategies(model, gpu, strategy)[:count]]


def run(result: RunResult, args: list[str], plot_dir) -> str:
    count = int_arg(args[0], "N") if args else 5
    rows = ranked(result, count)
    if not rows:
        return "no combination of the planner's strategies fits this GPU"
    lines = ["estimated from the job config (the planner's arithmetic, not the job):",
             f"{'combination':<24} {'cost':>4} {'per GPU':>9}"]
    for row in rows:
        lines.append(f"{row['label']:<24} {row['cost']:>4} {row['gpu_total_gb']:>6.1f} GB")
        lines.extend(f"    {why}" for why in row["why"])
    return "\n".join(lines)
