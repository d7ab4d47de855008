"""The debugsim home: a learner's secret incident key, and the record of reveals and attempts.

The home is `$DEBUGSIM_HOME`, else `~/.debugsim`. The key is created on first use and never
printed by learner commands; `$DEBUGSIM_KEY` overrides it (an instructor's class key makes a
class's incidents). The record is one small versioned JSON file, rewritten whole and atomically
on every change; a corrupt or newer file is reported and set aside, never silently overwritten.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from .files import write_atomic

FORMAT_VERSION = 1
KEY_ENV, HOME_ENV = "DEBUGSIM_KEY", "DEBUGSIM_HOME"


class HomeError(ValueError):
    """The home's files cannot be used (one line, for the user)."""


notices: list[str] = []      # things the user should be told (a corrupt record set aside)


def home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".debugsim")


def user_key() -> str:
    """The learner's incident key: `$DEBUGSIM_KEY`, else the home's key file (made on first use)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV]
    path = home() / "key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, secrets.token_hex(16) + "\n")
        path.chmod(0o600)
    key = path.read_text().strip()
    if len(key) < 16:
        raise HomeError(f"{path} does not hold a usable key; delete it to make a new one")
    return key


def _record_path() -> Path:
    return home() / "record.json"


def load_record() -> dict:
    path = _record_path()
    if not path.exists():
        return {"format_version": FORMAT_VERSION, "events": []}
    try:
        record = json.loads(path.read_text())
        version = record["format_version"]
        events = record["events"]
        if not isinstance(events, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        kept = _set_aside(path)
        notices.append(f"{path} was corrupt; kept it as {kept.name} and started afresh")
        return {"format_version": FORMAT_VERSION, "events": []}
    if version > FORMAT_VERSION:
        raise HomeError(f"{path} was written by a newer debugsim (format {version}); "
                        "upgrade debugsim or move the file away")
    return record


def _set_aside(path: Path) -> Path:
    kept = path.with_name(f"{path.stem}.corrupt-{int(time.time())}{path.suffix}")
    os.replace(path, kept)
    return kept


def record_event(kind: str, **fields) -> None:
    """Append one event (attempt, reveal, ...) to the record, rewriting it whole."""
    record = load_record()
    record["events"].append({"kind": kind, "time": round(time.time(), 3), **fields})
    path = _record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def events(kind: str | None = None, **match) -> list[dict]:
    all_events = load_record()["events"]
    return [e for e in all_events if (kind is None or e["kind"] == kind)
            and all(e.get(k) == v for k, v in match.items())]
