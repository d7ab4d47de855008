"""One example of a batch, token by token: input, label, whether the loss sees it, its loss."""
from __future__ import annotations

import dataclasses

from ..result import RunResult
from ._common import ProbeError, _Stop, _rebuild, _record_at, _untracked, int_arg

SPECIAL = {0: "<pad>", 1: "<bos>", 2: "<eos>", 3: "<sep>"}


def token_name(token: int, vocab_size: int) -> str:
    return SPECIAL.get(token, str(token)) if vocab_size > 4 else str(token)


def mask_row(result: RunResult, row: int, step: int = -1) -> dict:
    """Row `row` of the first micro-batch at `step` (negative counts from the end), as the loss
    saw it: per position the input token, its label (None where the loss ignores it) and the
    model's cross-entropy on that label at that step. The run is replayed up to that step, its
    code included, and stopped after the forward pass."""
    import torch
    import torch.nn.functional as F
    from ..callbacks import Callback
    from ..data import IGNORE
    from ..loop import train

    step = _record_at(result, step)["step"]
    config, callbacks, note = _rebuild(result)
    if not 0 <= row < config.batch_size:
        raise ProbeError(f"row {row}: a batch here has rows 0..{config.batch_size - 1}")

    class Capture(Callback):
        def on_loss(self, run, loss_sum, n_tokens, loss):
            if run.step == step:
                logits = run.logits[row].detach().float()
                targets = run.batch.targets[row]
                losses = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")
                self.found = (run.batch.tokens[row].tolist(), targets.tolist(), losses.tolist())
                raise _Stop
            return None

    capture = Capture()
    replay = dataclasses.replace(_untracked(config), steps=step + 1, eval_every=0)
    try:
        with torch.random.fork_rng():
            train(replay, [*callbacks, capture])
    except _Stop:
        pass
    if not hasattr(capture, "found"):
        raise ProbeError(f"the replay did not reach step {step}")
    tokens, targets, losses = capture.found
    positions = [{"position": i, "input": token, "label": None if label == IGNORE else label,
                  "loss": None if label == IGNORE else loss}
                 for i, (token, label, loss) in enumerate(zip(tokens, targets, losses))]
    report = {"step": step, "row": row, "vocab_size": config.vocab_size,
              "positions": positions}
    if note:
        report["note"] = note
    return report


def render_mask_row(report: dict) -> str:
    name = lambda t: token_name(t, report["vocab_size"])      # noqa: E731
    rows = report["positions"]
    counted = [p for p in rows if p["label"] is not None]
    lines = [f"row {report['row']} of the batch at step {report['step']} (micro-batch 0), "
             f"{len(rows)} positions",
             f"  {'pos':>3}  {'input':>6}  {'label':>6}  {'in loss':>7}  {'loss':>7}"]
    for p in rows:
        label = "-" if p["label"] is None else name(p["label"])
        loss = "-" if p["loss"] is None else f"{p['loss']:.3f}"
        lines.append(f"  {p['position']:>3}  {name(p['input']):>6}  {label:>6}  "
                     f"{'yes' if p['label'] is not None else 'no':>7}  {loss:>7}")
    mean = sum(p["loss"] for p in counted) / len(counted) if counted else None
    lines.append(f"  {len(counted)} of {len(rows)} positions carry a label"
                 + (f"; their mean loss {mean:.3f}" if mean is not None else ""))
    if report.get("note"):
        lines.append(f"  note: {report['note']}")
    return "\n".join(lines)


NAME = "mask"
USAGE = "mask ROW [STEP]"
HELP = "one example token by token: input, label, whether the loss sees it, its loss"
ENGINES = ("training",)
ORDER = 45                      # place in the help list


def available(scenario) -> bool:
    return scenario.base.get("data") == "sft"


def run(result: RunResult, args: list[str], plot_dir) -> str:
    if not args:
        raise ProbeError("which row? e.g. 'mask 0' (the last step) or 'mask 0 10'")
    row = int_arg(args[0], "the row")
    step = int_arg(args[1], "the step") if len(args) > 1 else -1
    return render_mask_row(mask_row(result, row, step))
