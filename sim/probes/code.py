"""The team's code that ran: the source of the functions this run really used.

Interviews ask two things of a broken run: "read the training code and find the bug", and "what
diagnostics would you ask for". This probe is the first. It prints, for each replaceable
function the scenario lets the learner read (`Scenario.code`, slots of
`sim/implementations.py`), the source of the implementation the run used, as it stands in the
file. Nothing in the text says which implementation it is or whether it is the usual one.
"""
from __future__ import annotations

from ..result import RunResult
from ._common import ProbeError


def code_listing(prepared, names: list[str] | None = None) -> list[dict]:
    """[{slot, title, file, function, source}] for a prepared run's readable slots (or the
    named ones, by slot or by function name). Needs no run: the code is what the config picks."""
    from .. import implementations
    scenario, config = prepared.scenario, prepared.config
    shown = []
    for slot in scenario.code:
        function = implementations.chosen(config, slot)
        shown.append({"slot": slot, "title": implementations.title(slot),
                      "file": implementations.where(slot), "function": function.__name__,
                      "source": implementations.source_of(function)})
    if names:
        wanted = [s for s in shown if s["slot"] in names or s["function"] in names]
        if not wanted:
            options = ", ".join(s["function"] for s in shown)
            raise ProbeError(f"no function named {' '.join(names)} here; this run's code: "
                             f"{options}")
        return wanted
    return shown


def render_code(listing: list[dict]) -> str:
    lines = []
    for part in listing:
        lines.append(f"--- {part['file']}: {part['function']}  ({part['title']})")
        lines += [f"    {line}" if line else "" for line in part["source"].splitlines()]
        lines.append("")
    return "\n".join(lines).rstrip()


NAME = "code"
USAGE = "code [FUNCTION]"
HELP = "the source of the team's functions this run used (loss, masking, cache, ...)"
ENGINES = ("training",)
ORDER = 85                      # place in the help list


def available(scenario) -> bool:
    return bool(scenario.code)


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_code(code_listing(result.prepared, args))
