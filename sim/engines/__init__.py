"""Engines, by name: `sim/engines/<name>.py` exposes `ENGINE`. Adding one touches one module.

Imported lazily, so naming an engine costs nothing until a scenario runs on it.
"""
from __future__ import annotations

import importlib

from .base import Engine, Prepared, RunOptions

__all__ = ["Engine", "Prepared", "RunOptions", "clear_caches", "get"]

_loaded: dict[str, Engine] = {}


def get(name: str) -> Engine:
    if name not in _loaded:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as error:
            if error.name != f"{__package__}.{name}":
                raise
            raise LookupError(f"unknown engine '{name}'") from None
        _loaded[name] = module.ENGINE
    return _loaded[name]


def clear_caches() -> None:
    """Drop what loaded engines keep between runs (an engine may cache work that runs share)."""
    for engine in _loaded.values():
        clear = getattr(engine, "clear_cache", None)
        if clear:
            clear()
