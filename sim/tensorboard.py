"""TensorBoard export of a run, through the optional extra `debugsim[tensorboard]`
(tensorboardX: a small writer of TensorBoard's event files, no TensorFlow).

Scalars per step, with the tags Hugging Face's Trainer uses where it has one (train/loss,
train/learning_rate, train/grad_norm, eval/loss) and debugsim's own names for the rest; a
non-finite loss or gradient norm is written as NaN (TensorBoard shows it), not left out. The
run's plots go in as images. `debugsim doctor` reads such event files back (`doctor/readers.py`).
"""
from __future__ import annotations

import math
from pathlib import Path

EXTRA = "pip install 'debugsim[tensorboard]'"

# record field -> TensorBoard tag; `every_step`: a missing value means it was NaN or inf
SCALARS = (
    ("loss", "train/loss", True),
    ("grad_norm", "train/grad_norm", True),
    ("lr", "train/learning_rate", True),
    ("update_ratio", "train/update_ratio", True),
    ("param_norm", "train/param_norm", True),
    ("nonfinite", "train/nonfinite", False),
    ("eval_loss", "eval/loss", False),
    ("mem_mib", "memory/in_use_mib", False),
    ("mem_peak_mib", "memory/step_peak_mib", False),
)


class MissingExtra(ImportError):
    """An optional extra is not installed (one line, naming the extra to install)."""


def require():
    """tensorboardX's SummaryWriter, or MissingExtra saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise MissingExtra(f"TensorBoard export needs the optional extra: {EXTRA} "
                           "(tensorboardX)") from None
    return SummaryWriter


def write_run(result, logdir: Path, plots=()) -> Path:
    """Write the run's scalars and `plots` (PNG paths) as TensorBoard events under `logdir`."""
    import logging
    writer_class = require()
    # tensorboardX warns once per NaN scalar; a NaN here is the run's evidence, not a mistake
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    writer = writer_class(logdir=str(logdir))
    try:
        for record in result.records:
            step = record["step"]
            for field, tag, every_step in SCALARS:
                value = record.get(field)
                if value is None and every_step:
                    value = math.nan
                if isinstance(value, bool):
                    value = float(value)
                if isinstance(value, (int, float)):
                    writer.add_scalar(tag, float(value), step)
        last = result.records[-1]["step"] if result.records else 0
        for path in plots:
            writer.add_image(f"plots/{Path(path).stem}", _pixels(path), last,
                             dataformats="HWC")
        writer.add_text("run", _describe(result), 0)
    finally:
        writer.close()
    return logdir


def _pixels(path):
    """A PNG as an HxWx3 uint8 array (matplotlib reads it; no extra image library)."""
    import matplotlib.image
    import numpy as np
    image = matplotlib.image.imread(str(path))
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return image[..., :3]


def _describe(result) -> str:
    prepared = result.prepared
    return (f"debugsim {prepared.scenario.id}, seed {prepared.seed}: status {result.status}"
            + (f" — {result.error}" if result.error else ""))
