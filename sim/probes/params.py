"""Each parameter of the model that trained: trainable, in the optimizer, its gradient, how far
it moved, its share of the model; and the trainable-parameter line PEFT prints.

"Ask for diagnostics" in a fine-tuning interview starts here: which parameters does the optimizer
hold, which of them receive a gradient, which ones moved. The run is replayed with its code (the
same seed gives the same run), measured at the start and at the end of every step.
"""
from __future__ import annotations

import dataclasses
import math

from ..result import RunResult
from ._common import _rebuild, _untracked, _fmt


def parameter_report(result: RunResult) -> dict:
    """{"line": PEFT's trainable-parameter line, "parameters": [{name, shape, count, share,
    trainable, in_optimizer, grad_norm (mean over the steps), grad_steps (steps with a non-zero
    gradient), moved (||end - start||), moved_rel (moved / ||start||, None from zero)}], "steps",
    "note"} for the run as replayed without a memory budget."""
    import torch
    from ..callbacks import Callback
    from ..loop import train
    from ..lora import trainable_report

    config, callbacks, note = _rebuild(result)

    class Watch(Callback):
        def on_run_start(self, run):
            self.names = [name for name, _ in run.model.named_parameters()]
            params = list(run.model.parameters())
            held = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
            self.in_optimizer = [id(p) in held for p in params]
            self.trainable = [p.requires_grad for p in params]
            self.shapes = [tuple(p.shape) for p in params]
            self.start = [p.detach().clone() for p in params]
            self.line = trainable_report(run.model)[2]
            self.norms = [[] for _ in params]
            self.steps = 0

        def on_after_backward(self, run):
            self.steps += 1
            for i, norm in enumerate(run.param_grad_norms):
                self.norms[i].append(norm)

        def on_run_end(self, run):
            self.end = [p.detach().clone() for p in run.model.parameters()]

    watch = Watch()
    replay = dataclasses.replace(_untracked(config), eval_every=0)
    with torch.random.fork_rng():
        try:
            train(replay, [*callbacks, watch])
        except Exception:              # a run that crashes still has its parameters to show
            pass
    total = sum(math.prod(shape) for shape in watch.shapes)
    rows = []
    for i, name in enumerate(watch.names):
        count = math.prod(watch.shapes[i])
        seen = [n for n in watch.norms[i] if n is not None]
        start, end = watch.start[i].double(), watch.end[i].double()
        moved = float((end - start).norm())
        size = float(start.norm())
        rows.append({"name": name, "shape": list(watch.shapes[i]), "count": count,
                     "share": count / total, "trainable": watch.trainable[i],
                     "in_optimizer": watch.in_optimizer[i],
                     "grad_norm": sum(seen) / len(seen) if seen else None,
                     "grad_steps": sum(1 for n in seen if n > 0),
                     "moved": moved, "moved_rel": moved / size if size > 0 else None})
    notes = [n for n in (note, "replayed without the memory budget"
                         if config.memory_budget_mib else None) if n]
    return {"line": watch.line, "parameters": rows, "steps": watch.steps,
            "note": "; ".join(notes) or None}


def render_parameter_report(report: dict) -> str:
    width = max([len("parameter"), *(len(row["name"]) for row in report["parameters"])])
    lines = [report["line"],
             f"per parameter over {report['steps']} steps (grad: mean norm, and the steps where "
             "it was non-zero; moved: ||end - start||, and relative to ||start||)",
             f"  {'parameter':<{width}} {'shape':>10} {'share':>7} {'trainable':>9} {'in optim':>8} "
             f"{'grad':>9} {'steps':>5} {'moved':>9} {'rel':>8}"]
    for row in report["parameters"]:
        shape = "x".join(str(n) for n in row["shape"])
        lines.append(f"  {row['name']:<{width}} {shape:>10} {row['share']:>7.2%} "
                     f"{_fmt(row['trainable']):>9} {_fmt(row['in_optimizer']):>8} "
                     f"{_fmt(row['grad_norm'], '.3g'):>9} {row['grad_steps']:>5} "
                     f"{_fmt(row['moved'], '.3g'):>9} {_fmt(row['moved_rel'], '.3g'):>8}")
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)


NAME = "params"
ALIASES = ("parameters",)
USAGE = "params"
HELP = ("each parameter: trainable, in the optimizer, its gradient, how far it moved, its "
        "share; the trainable-parameter line")
ENGINES = ("training",)
ORDER = 35                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_parameter_report(parameter_report(result))
