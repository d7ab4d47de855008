"""Writing files so that a reader never sees a torn one."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary sibling, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    """Indented JSON, atomically."""
    write_atomic(path, json.dumps(obj, indent=2) + "\n")
