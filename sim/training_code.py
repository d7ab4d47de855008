"""Which source files are "the training code": the loop, the model, the data, the callbacks
and the scenarios. Tracebacks shown to a learner (anomaly mode, memory snapshots) keep only
frames of these files, named relative to the package root (`sim/models.py`); torch's frames
and debugsim's own machinery (probes, replays, the app layer, the tracker) are cut."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]          # the package root (sim/.., scenarios/..)
TRAINING_FILES = frozenset({"sim/loop.py", "sim/models.py", "sim/callbacks.py",
                            "sim/data.py"})


def relative_name(path: str) -> str | None:
    """'sim/models.py' for a training-code file (given as any path), else None."""
    try:
        relative = Path(path).resolve().relative_to(ROOT).as_posix()
    except (ValueError, OSError):
        return None
    if relative in TRAINING_FILES or relative.startswith("scenarios/"):
        return relative
    return None


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of debugsim's own source (the package's modules, sim/ and scenarios/): what
    is kept on disk from a run (sim/run_store.py, sim/pretrained.py) is used only by the code
    that made it."""
    digest = hashlib.sha256()
    for source in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("sim/**/*.py")) \
            + sorted(ROOT.glob("scenarios/**/*.py")):
        digest.update(source.relative_to(ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()
