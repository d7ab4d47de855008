"""A class folder: the instructor's secret key, the roster and the config.

    DIR/key          the class's incident key (mode 600); it never leaves this folder
    DIR/roster.csv   one learner id a row (column `learner`; other columns are kept)
    DIR/class.json   versioned config: the class's name, what was assigned and when it is due

Every learner's incidents come from their own key, HMAC(class key, learner id), so neighbours
get different incidents of the same scenario. The assignment's seed is derived the same way.
An assignment carries a token, HMAC(class key, learner/scenario/seed), that only the
instructor can compute: an answer file claiming another learner's variant, or edited to claim
one, does not carry that learner's token.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from .app import UsageError
from .files import write_atomic, write_json

FORMAT_VERSION = 1
LEARNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SEED_RANGE = 10_000


class ClassError(UsageError):
    """The class folder cannot be used as asked (one line, for the user)."""


@dataclass
class Classroom:
    folder: Path
    name: str
    key: str
    learners: list[str]
    assigned: list[dict] = field(default_factory=list)   # {"scenarios": [...], "due": ..., "time"}

    def learner_key(self, learner: str) -> str:
        """The incident key of one learner: their incidents are drawn with it."""
        return _mac(self.key, f"learner/{learner}")

    def seed(self, learner: str, scenario_id: str) -> int:
        """The seed of a learner's variant of a scenario (derived, so nothing is stored)."""
        return int(_mac(self.learner_key(learner), f"seed/{scenario_id}")[:8], 16) % SEED_RANGE

    def token(self, learner: str, scenario_id: str, seed: int) -> str:
        """What an answer file must carry to be this learner's answer for this variant."""
        return _mac(self.key, f"assignment/{learner}/{scenario_id}/{seed}")[:20]

    def scenarios(self) -> list[str]:
        """Every scenario assigned so far, in the order assigned."""
        seen: list[str] = []
        for entry in self.assigned:
            seen += [s for s in entry["scenarios"] if s not in seen]
        return seen

    def due(self, scenario_id: str) -> str | None:
        for entry in reversed(self.assigned):
            if scenario_id in entry["scenarios"]:
                return entry.get("due")
        return None

    def record_assignment(self, scenario_ids: list[str], due: str | None) -> None:
        self.assigned.append({"scenarios": list(scenario_ids), "due": due,
                              "time": round(time.time(), 3)})
        _write_config(self)


def _mac(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def init(folder: Path, name: str, learners: int | None = None, roster: Path | None = None,
         key: str | None = None) -> Classroom:
    """Make a class folder: a fresh key, a roster (from a CSV, or `learners` numbered ids),
    and its config. `key` fixes the key (reproducible benchmarks and tests)."""
    folder = Path(folder)
    if (folder / "class.json").exists() or (folder / "key").exists():
        raise ClassError(f"{folder} already holds a class; choose another folder")
    if folder.exists() and not folder.is_dir():
        raise ClassError(f"{folder} is a file, not a folder")
    if (learners is None) == (roster is None):
        raise ClassError("give the learners: --roster FILE.csv or --learners N")
    if not name.strip():
        raise ClassError("the class needs a name (--name)")
    ids = read_roster(Path(roster)) if roster else \
        [f"learner{n:02d}" for n in range(1, learners + 1)]
    if not ids:
        raise ClassError("the roster holds no learners")
    folder.mkdir(parents=True, exist_ok=True)
    key = key or secrets.token_hex(32)
    _write_secret(folder / "key", key + "\n")
    write_atomic(folder / "roster.csv", "learner\n" + "".join(f"{i}\n" for i in ids))
    classroom = Classroom(folder, name.strip(), key, ids)
    _write_config(classroom)
    return classroom


def _write_secret(path: Path, text: str) -> None:
    """Like write_atomic, but the file is readable by its owner only from its first byte."""
    tmp = path.with_name(path.name + ".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)                  # whatever the umask left
    os.replace(tmp, path)


def read_roster(path: Path) -> list[str]:
    """Learner ids from a CSV: the `learner` (or `id`) column, else the first column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ClassError(f"cannot read the roster {path}: {error.strerror}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(n) for n in ("learner", "id") if n in header), None)
    body = rows[1:] if column is not None else rows
    ids = [row[column or 0].strip() for row in body if len(row) > (column or 0)]
    for number, learner in enumerate(ids, 2 if column is not None else 1):
        if not LEARNER_ID.match(learner):
            raise ClassError(f"{path}, row {number}: '{learner}' is not a usable learner id "
                             "(letters, digits, '.', '_' or '-', at most 64)")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ClassError(f"{path}: learner ids appear twice: {', '.join(duplicates)}")
    return ids


def load(folder: Path) -> Classroom:
    """The class in `folder`; ClassError (one line) when it is not a usable class folder."""
    folder = Path(folder)
    config_path = folder / "class.json"
    if not config_path.exists():
        raise ClassError(f"{folder} is not a class folder (no class.json); "
                         "make one with `debugsim class init`")
    try:
        config = json.loads(config_path.read_text())
        version, name = config["format_version"], config["name"]
        assigned = list(config.get("assigned", []))
    except (ValueError, KeyError, TypeError):
        raise ClassError(f"{config_path} is not a valid class config") from None
    if version > FORMAT_VERSION:
        raise ClassError(f"{config_path} was written by a newer debugsim (format {version})")
    try:
        key = (folder / "key").read_text().strip()
    except OSError:
        raise ClassError(f"{folder}/key is missing: the class's incidents cannot be "
                         "drawn without it") from None
    if len(key) < 16:
        raise ClassError(f"{folder}/key does not hold a usable key")
    return Classroom(folder, name, key, read_roster(folder / "roster.csv"), assigned)


def _write_config(classroom: Classroom) -> None:
    write_json(classroom.folder / "class.json",
               {"format_version": FORMAT_VERSION, "name": classroom.name,
                "learners": len(classroom.learners), "assigned": classroom.assigned})
