"""Writing files so that a reader never sees a torn one."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary sibling, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` through a temporary sibling of its own (two processes may write the same
    cache file at once), then rename it into place; the folder is made if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite(obj):
    """`obj` with every NaN and +-inf float replaced by None: JSON has no such numbers (Python
    would write bare `NaN` and `Infinity`, which strict parsers reject)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj


def json_text(obj, **options) -> str:
    """Strict JSON text: non-finite floats become null; anything else non-finite is an error."""
    return json.dumps(finite(obj), allow_nan=False, **options)


def write_json(path: Path, obj) -> None:
    """Indented strict JSON (non-finite floats as null), atomically."""
    write_atomic(path, json_text(obj, indent=2) + "\n")
