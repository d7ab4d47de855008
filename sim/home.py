"""The debugsim home: a learner's secret incident key, and the record of reveals and attempts.

The home is `$DEBUGSIM_HOME`, else `~/.debugsim`. The key is created on first use and never
printed by learner commands; `$DEBUGSIM_KEY` overrides it (an instructor's class key makes a
class's incidents). The record is one small versioned JSON file, rewritten whole and atomically
on every change; a corrupt file is reported and set aside, a newer one reported and left alone:
never silently overwritten. Events: "attempt", "reveal", "hint" (see `sim/progress.py`, which
derives a learner's progress from them).

Format 2 (hints, and the hidden cause, probes, score and time on attempts) reads format 1
files: their events gain `"cause": null`, which progress fills in from the learner's key.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from .files import write_atomic

FORMAT_VERSION = 2
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
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HomeError(f"{path} was written by a newer debugsim (format {version}); "
                        "upgrade debugsim or move the file away")
    return _migrate(record)


def _migrate(record: dict) -> dict:
    """An older record in the current format (in memory; written back on the next change)."""
    if record["format_version"] < 2:              # 1 -> 2: attempts and reveals name no cause
        for event in record["events"]:
            event.setdefault("cause", None)
    record["format_version"] = FORMAT_VERSION
    return record


def _set_aside(path: Path) -> Path:
    kept = path.with_name(f"{path.stem}.corrupt-{int(time.time())}{path.suffix}")
    os.replace(path, kept)
    return kept


def record_event(kind: str, **fields) -> None:
    """Append one event (attempt, reveal, ...) to the record, rewriting it whole."""
    record = load_record()
    record["events"].append({"kind": kind, "time": round(time.time(), 3), **fields})
    _write(record)


def forget_events(scenario: str | None = None) -> int:
    """Drop the events of one scenario (all when None); returns how many were dropped."""
    record = load_record()
    kept = [e for e in record["events"] if scenario is not None and e.get("scenario") != scenario]
    dropped = len(record["events"]) - len(kept)
    record["events"] = kept
    _write(record)
    return dropped


def _write(record: dict) -> None:
    path = _record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def events(kind: str | None = None, **match) -> list[dict]:
    all_events = load_record()["events"]
    return [e for e in all_events if (kind is None or e["kind"] == kind)
            and all(e.get(k) == v for k, v in match.items())]
