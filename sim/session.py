"""The probe prompt of `debugsim play`: parse a probe command, run it, return text.

Probes never raise for a learner's typo: they return a one-line message instead.
"""
from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

from . import probes
from .config import ConfigError, did_you_mean
from .result import RunResult
from .scenario import Scenario


def help_text(scenario: Scenario) -> str:
    """The probes this scenario offers, one per line, from the probe registry."""
    available = probes.for_scenario(scenario)
    width = max([len(p.USAGE) for p in available] + [len("help")]) + 2
    lines = ["probes (type one per line; empty line or 'done' to move on):"]
    for probe in available:
        lines += textwrap.wrap(f"{probe.USAGE:<{width}}{probe.HELP}", 96, initial_indent="  ",
                               subsequent_indent=" " * (width + 2))
    lines.append(f"  {'hint':<{width}}a staged hint: which probe, what to look for, the cause "
                 "(each costs points)")
    lines.append(f"  {'help':<{width}}this list")
    return "\n".join(lines)


def probe_words(scenario: Scenario) -> list[str]:
    """Every word the prompt accepts as a probe name (for suggestions and completion)."""
    words = ["help", "hint"]
    for probe in probes.for_scenario(scenario):
        words += [probe.NAME, *getattr(probe, "ALIASES", ())]
    return words


def is_probe(line: str, scenario: Scenario) -> bool:
    """Whether the line names one of this scenario's probes (what counts as a probe used)."""
    words = line.split()
    return bool(words) and probes.find(words[0], scenario) is not None


def run_probe(line: str, result: RunResult, plot_dir: Path) -> str:
    scenario = result.prepared.scenario
    try:
        words = shlex.split(line)
    except ValueError as error:
        return f"cannot parse '{line}': {error}"
    if not words:
        return ""
    name, args = words[0].lower(), words[1:]
    if name == "help":
        return help_text(scenario)
    probe = probes.find(name, scenario)
    if probe is None and any(name == p.NAME for p in probes.all_probes()):
        return f"'{name}' is not available in this scenario; 'help' lists the probes that are"
    if probe is None:
        return (f"unknown probe '{name}'{did_you_mean(name, probe_words(scenario))}; "
                "type 'help'")
    try:
        return probe.run(result, args, Path(plot_dir))
    except (probes.ProbeError, ConfigError, ValueError, KeyError) as error:
        return f"{name}: {error}"


def parse_fix_answer(answer: str, scenario: Scenario, engine):
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
    return fix_ids, engine.parse_settings(assignments)


def parse_cause_answer(answer: str, scenario: Scenario) -> str:
    answer = answer.strip()
    if answer.isdigit() and 1 <= int(answer) <= len(scenario.causes):
        return scenario.causes[int(answer) - 1].id
    return scenario.cause(answer).id
