"""Readers: a file (or a run folder) -> TrainingLog.

Supported: debugsim's metrics.jsonl; Hugging Face's trainer_state.json (its `log_history`,
bare NaN and Infinity tokens included); CSV with a header row (step, loss, lr, grad_norm, ...);
TensorBoard event files (with the optional extra `debugsim[tensorboard]`, which brings the
protobuf classes that decode them). A folder is searched for these, in that order.
"""
from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

from .log import TrainingLog

SUPPORTED = ("debugsim metrics.jsonl", "Hugging Face trainer_state.json",
             "CSV with a header row (step, loss, lr, grad_norm, ...)",
             "TensorBoard event files (events.out.tfevents.*)")

# other tools' names for debugsim's series
ALIASES = {
    "step": "step", "global_step": "step", "iteration": "step", "iter": "step", "it": "step",
    "loss": "loss", "train_loss": "loss", "train/loss": "loss", "training_loss": "loss",
    "lr": "lr", "learning_rate": "lr", "train/learning_rate": "lr", "train/lr": "lr",
    "grad_norm": "grad_norm", "gradient_norm": "grad_norm", "train/grad_norm": "grad_norm",
    "grad-norm": "grad_norm", "gnorm": "grad_norm",
    "update_ratio": "update_ratio", "train/update_ratio": "update_ratio",
    "param_norm": "param_norm", "train/param_norm": "param_norm",
    "eval_loss": "eval_loss", "val_loss": "eval_loss", "validation_loss": "eval_loss",
    "eval/loss": "eval_loss", "valid_loss": "eval_loss",
    "mem_mib": "mem_mib", "memory_mib": "mem_mib", "memory/in_use_mib": "mem_mib",
    "mem_peak_mib": "mem_peak_mib", "memory/step_peak_mib": "mem_peak_mib",
    "nonfinite": "nonfinite", "train/nonfinite": "nonfinite",
    # RLHF: TRL's PPO logs objective/kl, objective/scores and the KL penalty as
    # objective/non_score_reward (the rules only ask whether the penalty is 0, whatever its sign)
    "kl": "kl", "objective/kl": "kl", "kl_penalty": "kl_penalty",
    "objective/non_score_reward": "kl_penalty", "ppo/mean_non_score_reward": "kl_penalty",
    "reward": "reward", "objective/scores": "reward", "ppo/mean_scores": "reward",
}


class DoctorError(ValueError):
    """A log the doctor cannot read (one line)."""


def read(path) -> TrainingLog:
    path = Path(path)
    if path.is_dir():
        return read(_pick(path))
    if not path.is_file():
        raise DoctorError(f"{path}: no such file or folder")
    name = path.name
    if name.startswith("events.out.tfevents"):
        return read_tensorboard(path)
    head = path.read_bytes()[:4096].decode("utf-8", "replace").lstrip()
    if name.endswith(".jsonl") or head.startswith('{"event"'):
        return read_jsonl(path)
    if head.startswith("{") and "log_history" in path.read_text(encoding="utf-8", errors="replace"):
        return read_trainer_state(path)
    if name.endswith((".csv", ".tsv")):
        return read_csv(path)
    raise DoctorError(f"{path}: not a format the doctor reads; supported: {'; '.join(SUPPORTED)}")


def _pick(folder: Path) -> Path:
    for pattern in ("metrics.jsonl", "trainer_state.json", "*/trainer_state.json", "*.csv",
                    "events.out.tfevents*", "*/events.out.tfevents*"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[-1]
    raise DoctorError(f"{folder}: no training log in it; supported: {'; '.join(SUPPORTED)}")


def read_jsonl(path: Path) -> TrainingLog:
    """debugsim's metrics.jsonl (header, step records, end record), or any JSON-lines log whose
    objects hold a step and named values."""
    log = TrainingLog(str(path), "debugsim metrics.jsonl")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise DoctorError(f"{path}:{number}: not JSON (is the file torn?)") from None
        event = obj.get("event", "step")
        if event == "header":
            log.config = dict(obj.get("config") or {})
        elif event == "end":
            log.end = {"status": obj.get("status"), "error": obj.get("error"),
                       "steps_completed": obj.get("steps_completed")}
        elif "step" in obj:
            _add_record(log, obj, every_step=("loss", "grad_norm") if event == "step" else ())
    if not log.series and not log.end:
        raise DoctorError(f"{path}: no step records in it")
    return log


def _add_record(log: TrainingLog, obj: dict, every_step=()) -> None:
    step = obj["step"]
    for key, value in obj.items():
        name = ALIASES.get(key)
        if name is None or name == "step":
            continue
        if value is None and name in every_step:   # debugsim writes NaN and inf as null
            value = math.nan
        log.add(name, step, value)


def read_trainer_state(path: Path) -> TrainingLog:
    try:                               # Python's json reads the bare NaN the Trainer writes
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DoctorError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    history = state.get("log_history")
    if not isinstance(history, list):
        raise DoctorError(f"{path}: no log_history in it")
    log = TrainingLog(str(path), "Hugging Face trainer_state.json")
    for entry in history:
        if isinstance(entry, dict) and "step" in entry and "train_runtime" not in entry:
            _add_record(log, entry)                 # (the last entry: run averages, skipped)
    if state.get("eval_steps"):
        log.config["eval_every"] = state["eval_steps"]
    if not log.series:
        raise DoctorError(f"{path}: log_history holds no logged values")
    return log


def read_csv(path: Path) -> TrainingLog:
    text = path.read_text(encoding="utf-8")
    dialect = csv.excel_tab if path.suffix == ".tsv" else csv.excel
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows:
        raise DoctorError(f"{path}: no rows under the header")
    columns = {c: ALIASES.get(c.strip().lower()) for c in rows[0] if c}
    step_column = next((c for c, n in columns.items() if n == "step"), None)
    if not any(n and n != "step" for n in columns.values()):
        raise DoctorError(f"{path}: no column the doctor knows in its header; expected "
                          "step, loss, lr, grad_norm, eval_loss, ...")
    log = TrainingLog(str(path), "CSV")
    for index, row in enumerate(rows):
        try:
            step = int(float(row[step_column])) if step_column else index
        except (TypeError, ValueError):
            continue
        for column, name in columns.items():
            if name and name != "step":
                log.add(name, step, _number(row.get(column)))
    return log


def _number(text):
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_tensorboard(path: Path) -> TrainingLog:
    """Scalars of a TensorBoard event file (TFRecord frames of `Event` protobufs)."""
    try:
        from tensorboardX.proto.event_pb2 import Event
    except ImportError:
        from ..tensorboard import EXTRA
        raise DoctorError(f"reading TensorBoard event files needs the optional extra: {EXTRA} "
                          "(tensorboardX)") from None
    log = TrainingLog(str(path), "TensorBoard event file")
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12                    # length (8), its CRC (4), the data, its CRC (4)
        if start + length + 4 > len(data):
            break                              # a torn last frame: keep what came before
        event = Event.FromString(data[start:start + length])
        offset = start + length + 4
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            name = ALIASES.get(value.tag, ALIASES.get(value.tag.split("/")[-1]))
            if name and name != "step" and value.HasField("simple_value"):
                log.add(name, event.step, value.simple_value)
    if not log.series:
        raise DoctorError(f"{path}: no scalars in it")
    return log
