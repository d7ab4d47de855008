"""The scenario registry: built-ins registered explicitly, third-party packs via entry points.

A pack exposes an entry point in the group `debugsim.scenarios` whose object is a `Scenario`
or a zero-argument callable returning an iterable of them. Packs load lazily, the first time
the whole catalogue is needed, and a broken pack is reported, not fatal.
"""
from __future__ import annotations

import importlib
import sys
from typing import Iterable

from .config import did_you_mean
from .scenario import Scenario

ENTRY_POINT_GROUP = "debugsim.scenarios"
BUILTIN_MODULES = ("nan_loss", "oom", "bad_lr", "repetitive_decoding", "oom_13b")

_registry: dict[str, Scenario] = {}
_loaded = False
load_warnings: list[str] = []


class UnknownScenario(LookupError):
    pass


def register(scenario: Scenario, replace: bool = False) -> Scenario:
    if scenario.id in _registry and not replace:
        raise ValueError(f"scenario '{scenario.id}' is already registered")
    _registry[scenario.id] = scenario
    return scenario


def unregister(scenario_id: str) -> None:
    _registry.pop(scenario_id, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_MODULES:
        module = importlib.import_module(f"..scenarios.{name}", __package__)
        register(module.SCENARIO, replace=True)
    _load_entry_points()


def _load_entry_points() -> None:
    from importlib.metadata import entry_points
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            found: Iterable[Scenario] = [loaded] if isinstance(loaded, Scenario) else loaded()
            for scenario in found:
                register(scenario, replace=False)
        except Exception as error:  # a broken pack must not break the catalogue
            load_warnings.append(f"scenario pack '{entry.name}' failed to load: {error}")
            print(f"warning: {load_warnings[-1]}", file=sys.stderr)


def all_scenarios() -> list[Scenario]:
    _load()
    return list(_registry.values())


def get(scenario_id: str) -> Scenario:
    _load()
    try:
        return _registry[scenario_id]
    except KeyError:
        raise UnknownScenario(f"unknown scenario '{scenario_id}'"
                              f"{did_you_mean(scenario_id, _registry)}; "
                              f"`debugsim list` shows them all") from None
