"""The scenario registry: the built-in catalogue, and third-party packs via entry points.

Built-ins are the modules of `debugsim.scenarios`, each exposing `SCENARIO`: adding one is adding
its module. They are listed by difficulty (easy, medium, hard), then by id. A pack exposes an entry point in the group `debugsim.scenarios` whose object is a `Scenario`
or a zero-argument callable returning an iterable of them. Packs load lazily, the first time
the whole catalogue is needed, and a broken pack is reported, not fatal.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Iterable

from .config import did_you_mean
from .scenario import Scenario

ENTRY_POINT_GROUP = "debugsim.scenarios"
DIFFICULTIES = ("easy", "medium", "hard")

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


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module("..scenarios", __package__)
    builtins = [importlib.import_module(f"{package.__name__}.{info.name}").SCENARIO
                for info in pkgutil.iter_modules(package.__path__)]
    for scenario in sorted(builtins, key=_order):
        register(scenario, replace=True)
    _load_entry_points()


def _order(scenario: Scenario):
    rank = DIFFICULTIES.index(scenario.difficulty) if scenario.difficulty in DIFFICULTIES else 9
    return rank, scenario.id


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
