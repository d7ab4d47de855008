"""The probe prompt of `debugsim play`: parse a probe command, run it, return text.

Probes never raise for a learner's typo: they return a one-line message instead.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .config import ConfigError, did_you_mean, parse_assignments
from .runner import RunResult
from .scenario import Scenario

HELP = """probes (type one per line; empty line or 'done' to move on):
  table [START [END]]     the log table for a range of steps
  plot SIGNAL             plot one signal (loss, grad_norm, lr, update_ratio, param_norm,
                          layer_grad_norm, mem_mib, eval_loss, nonfinite) to a PNG
  grads STEP              per-layer gradient norms at a step
  batch STEP              statistics of the batch the loop saw at a step
  memory                  simulated memory: peak by category, per-step use
  lrfind                  learning-rate range test on a fresh model
  anomaly                 re-run the first bad step under autograd anomaly detection
  samples [k=v ...]       generate text with decoding settings (text scenarios only)
  help                    this list"""

PROBES = ("table", "plot", "grads", "batch", "memory", "lrfind", "anomaly", "samples", "help")


def run_probe(line: str, result: RunResult, scenario: Scenario, plot_dir: Path) -> str:
    from . import plots, probes
    try:
        words = shlex.split(line)
    except ValueError as error:
        return f"cannot parse '{line}': {error}"
    if not words:
        return ""
    name, args = words[0].lower(), words[1:]
    if scenario.engine == "planner":
        return _plan_probe(name, result)
    try:
        if name == "help":
            return HELP
        if name == "table":
            bounds = [int(a) for a in args[:2]]
            return probes.log_table(result, *bounds)
        if name == "plot":
            if not args:
                return "plot what? e.g. 'plot grad_norm'"
            path = plot_dir / f"probe_{args[0]}.png"
            plots.signal(result, args[0], path)
            return f"wrote {path}"
        if name == "grads":
            return probes.render_layer_grads(probes.layer_grads(result, _step(args)))
        if name == "batch":
            return probes.render_batch_stats(probes.batch_stats(result, _step(args),
                                                                scenario=scenario))
        if name == "memory":
            return probes.render_memory_breakdown(probes.memory_breakdown(result))
        if name == "lrfind":
            report = probes.lr_range_test(result, scenario=scenario)
            path = plot_dir / "probe_lr_range_test.png"
            plots.lr_finder(report, path)
            return probes.render_lr_range_test(report) + f"\nwrote {path}"
        if name == "anomaly":
            return probes.render_anomaly(probes.anomaly(result, scenario=scenario))
        if name == "samples":
            if not scenario.generates_text:
                return "this scenario does not generate text"
            from .decoding import render_samples
            return render_samples(result, scenario, parse_assignments(args))
    except (probes.ProbeError, ConfigError, ValueError, KeyError) as error:
        return f"{name}: {error}"
    return f"unknown probe '{name}'{did_you_mean(name, PROBES)}; type 'help'"


def _plan_probe(name: str, result: RunResult) -> str:
    if name in ("memory", "plan"):
        from .memplan.exercise import plan_lines
        return "\n".join(plan_lines(result.summary))
    if name == "help":
        return ("probes: 'memory' shows the per-GPU breakdown of the failing plan; "
                "`debugsim memory --help` explores any combination")
    return (f"'{name}' needs a training run; this scenario is graded by the memory planner: "
            "try 'memory'")


def _step(args: list[str]) -> int:
    if not args:
        raise ValueError("which step? e.g. 'batch 12'")
    return int(args[0])


def parse_fix_answer(answer: str, scenario: Scenario):
    """'b', 'clip_grad', 'lr=1e-3 grad_clip=1' or 'b lr=1e-3' -> (fix ids, settings)."""
    fix_ids, assignments = [], []
    letters = {chr(ord("a") + i): fix.id for i, fix in enumerate(scenario.fixes)}
    for word in answer.replace(",", " ").split():
        if "=" in word:
            assignments.append(word)
        elif word.lower() in letters:
            fix_ids.append(letters[word.lower()])
        else:
            fix_ids.append(scenario.fix(word).id)          # LookupError with did-you-mean
    from .runner import parse_settings
    return fix_ids, parse_settings(scenario, assignments)


def parse_cause_answer(answer: str, scenario: Scenario) -> str:
    answer = answer.strip()
    if answer.isdigit() and 1 <= int(answer) <= len(scenario.causes):
        return scenario.causes[int(answer) - 1].id
    return scenario.cause(answer).id
