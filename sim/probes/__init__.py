"""Probes: what a learner can look at after a run, before naming a cause.

Each probe is one module in this package declaring

    NAME      the word typed at the `probe>` prompt (ALIASES: other words for it)
    USAGE     its arguments, e.g. "grads STEP"
    HELP      one line for the help list
    ENGINES   the engines whose runs it can read, e.g. ("training",)
    ORDER     optional: its place in the help list (lower first; default 100)
    run(result, args, plot_dir) -> str     the text a learner reads
    available(scenario) -> bool            optional: e.g. only scenarios that generate text

and, for notebooks, the plain-data functions it renders (`layer_grads`, `batch_stats`, ...).
Adding a probe means adding its module here: the prompt, its help and its completion read
this registry. Probes never raise for a run that failed (out of memory, NaN): such runs answer
with a note. Bad arguments raise `ProbeError`, a `ValueError` with a one-line message.

Nothing here imports torch at import time.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ._common import NONFINITE_MARK, ProbeError, end_note, nonfinite_steps
from .table import log_rows, log_table
from .gradients import layer_grads, render_layer_grads
from .batch import rebuild_batch, batch_stats, render_batch_stats
from .memory import memory_breakdown, render_memory_breakdown
from .lr_range import lr_range_test, render_lr_range_test
from .replay import anomaly, render_anomaly

__all__ = [
    "NONFINITE_MARK", "ProbeError", "end_note", "nonfinite_steps", "log_rows", "log_table",
    "layer_grads", "render_layer_grads", "rebuild_batch", "batch_stats", "render_batch_stats",
    "memory_breakdown", "render_memory_breakdown", "lr_range_test", "render_lr_range_test",
    "anomaly", "render_anomaly", "all_probes", "for_scenario", "find",
]

_probes: list[ModuleType] | None = None


def all_probes() -> list[ModuleType]:
    """Every probe module in this package, in name order."""
    global _probes
    if _probes is None:
        modules = [importlib.import_module(f".{info.name}", __name__)
                   for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
        _probes = sorted((m for m in modules if hasattr(m, "NAME")),
                         key=lambda m: (getattr(m, "ORDER", 100), m.NAME))
        _check_unique(_probes)
    return _probes


def _check_unique(probes: list[ModuleType]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for probe in probes:
        for engine in probe.ENGINES:
            for word in (probe.NAME, *getattr(probe, "ALIASES", ())):
                if (engine, word) in seen:
                    raise ValueError(f"probe word '{word}' is used twice for the {engine} "
                                     f"engine ({seen[engine, word]} and {probe.__name__})")
                seen[engine, word] = probe.__name__


def for_scenario(scenario) -> list[ModuleType]:
    """The probes a learner can use on this scenario's runs."""
    return [p for p in all_probes() if scenario.engine in p.ENGINES
            and getattr(p, "available", lambda s: True)(scenario)]


def find(word: str, scenario) -> ModuleType | None:
    word = word.lower()
    return next((p for p in for_scenario(scenario)
                 if word == p.NAME or word in getattr(p, "ALIASES", ())), None)
