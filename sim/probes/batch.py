"""The exact batch the loop saw at a step, rebuilt and measured."""
from __future__ import annotations

import dataclasses

from ..result import RunResult
from ._common import ProbeError, end_note, _rebuild, _untracked, _overrides, _Stop, step_arg


def rebuild_batch(result: RunResult, step: int, micro: int = 0):
    """The exact batch the loop trained on at (`step`, `micro`): the data stream's batch, passed
    through the run's batch-changing callbacks. Returns (batch, note-or-None)."""
    from ..data import make_stream

    config, callbacks, note = _rebuild(result)
    changers = [c for c in callbacks if _overrides("on_batch", c)]
    if not changers:
        return make_stream(config).batch(step, micro), note
    # A callback changes batches: replay the run up to that micro-batch so any state the
    # callback keeps (counters, RNG) is exactly what it was.
    from ..callbacks import Callback
    from ..loop import train

    class Capture(Callback):
        """Keeps the batch of (step, micro) as the later callbacks would see it, then stops."""

        def __init__(self) -> None:
            self.batch, self.seen = None, 0

        def on_step_start(self, run) -> None:
            self.seen = 0

        def on_batch(self, run, batch):
            if run.step == step and self.seen == micro:
                self.batch = batch
                raise _Stop
            self.seen += 1
            return None

    capture = Capture()
    try:
        train(dataclasses.replace(_untracked(config), steps=max(config.steps, step + 1)),
              [*callbacks, capture])
    except _Stop:
        pass
    return capture.batch, note


def batch_stats(result: RunResult, step: int, micro: int = 0) -> dict:
    """Measure the batch the loop saw at `step` (micro-batch `micro`): non-finite values,
    sequence lengths, padding, supervised tokens, label range and padding side."""
    import torch
    from ..data import IGNORE, PAD

    config = result.config
    if step < 0:
        if not result.records:
            raise ProbeError(f"no steps were recorded: {end_note(result)}")
        step = result.records[-1]["step"] + 1 + step
    if not 0 <= micro < config.grad_accum_steps:
        raise ProbeError(f"micro={micro}: this run has {config.grad_accum_steps} micro-batch(es) "
                         f"per step (0..{config.grad_accum_steps - 1})")
    batch, note = rebuild_batch(result, step, micro)
    if batch is None:
        return {"step": step, "micro": micro, "note": note or "the batch could not be rebuilt"}
    tokens, targets = batch.tokens, batch.targets
    padding = batch.key_padding if batch.key_padding is not None else tokens == PAD
    rows, width = tokens.shape
    lengths = (~padding).sum(1)
    supervised = targets != IGNORE
    per_row = supervised.sum(1)
    labels = targets[supervised]
    nonfinite = {}
    for name, tensor in (("tokens", tokens), ("targets", targets)):
        nonfinite[name] = int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0
    sides = []
    for i in range(rows):
        if not padding[i].any():
            continue
        sides.append("left" if padding[i, 0] else "right" if padding[i, -1] else "middle")
    side = "none" if not sides else sides[0] if len(set(sides)) == 1 else "mixed"
    # padding positions that are supervised: a label on a padding input is a collation bug
    supervised_padding = int((supervised & padding).sum())
    empty_rows = [i for i in range(rows) if per_row[i] == 0]
    stats = {
        "step": step, "micro": micro, "rows": rows, "seq_len": width,
        "nonfinite": nonfinite,
        "lengths": {"min": int(lengths.min()), "mean": float(lengths.float().mean()),
                    "max": int(lengths.max())},
        "padding_share": float(padding.float().mean()),
        "padding_side": side, "config_padding_side": config.padding_side if config.data == "sft"
        else None,
        "supervised_tokens": int(supervised.sum()),
        "supervised_share": float(supervised.float().mean()),
        "supervised_per_row": {"min": int(per_row.min()), "mean": float(per_row.float().mean()),
                               "max": int(per_row.max())},
        "rows_without_supervision": len(empty_rows),
        "rows_without_supervision_idx": empty_rows[:16],
        "label_min": int(labels.min()) if labels.numel() else None,
        "label_max": int(labels.max()) if labels.numel() else None,
        "labels_out_of_range": int(((labels < 0) | (labels >= config.vocab_size)).sum()),
        "token_min": int(tokens.min()), "token_max": int(tokens.max()),
        "vocab_size": config.vocab_size,
        "supervised_padding_positions": supervised_padding,
        "first_row": tokens[0].tolist(), "first_row_targets": targets[0].tolist(),
        "in_run": bool(result.records) and step <= result.records[-1]["step"],
    }
    if note:
        stats["note"] = note
    return stats


def render_batch_stats(stats: dict) -> str:
    if "rows" not in stats:
        return f"batch at step {stats.get('step')}: {stats.get('note')}"
    s = stats
    lines = [f"batch at step {s['step']}, micro-batch {s['micro']}: {s['rows']} rows x "
             f"{s['seq_len']} tokens" + ("" if s["in_run"] else "  (the run stopped before "
                                         "this step; this is the batch it would have seen)")]
    lines.append(f"  non-finite values      tokens {s['nonfinite']['tokens']}, "
                 f"targets {s['nonfinite']['targets']}")
    lines.append(f"  sequence length        min {s['lengths']['min']}, mean "
                 f"{s['lengths']['mean']:.1f}, max {s['lengths']['max']} (non-padding tokens)")
    side = s["padding_side"]
    if s["config_padding_side"] and side not in ("none", s["config_padding_side"]):
        side += f" (config says {s['config_padding_side']})"
    lines.append(f"  padding                {s['padding_share']:.1%} of positions, side: {side}")
    lines.append(f"  supervised tokens      {s['supervised_tokens']} "
                 f"({s['supervised_share']:.1%}); per row min {s['supervised_per_row']['min']}, "
                 f"mean {s['supervised_per_row']['mean']:.1f}, "
                 f"max {s['supervised_per_row']['max']}")
    flag = "  <-- a loss averaged over this batch's tokens divides by this" \
        if s["supervised_tokens"] == 0 else ""
    empty = s["rows_without_supervision"]
    which = ("" if not empty else " (all rows)" if empty == s["rows"] else
             f" (rows {', '.join(map(str, s['rows_without_supervision_idx']))}"
             + (", ..." if empty > len(s["rows_without_supervision_idx"]) else "") + ")")
    lines.append(f"  rows with no labels    {empty}{which}{flag}")
    if s["label_min"] is None:
        lines.append("  label range            none: no supervised tokens")
    else:
        lines.append(f"  label range            {s['label_min']}..{s['label_max']} (vocab "
                     f"0..{s['vocab_size'] - 1}; {s['labels_out_of_range']} out of range)")
    lines.append(f"  token range            {s['token_min']}..{s['token_max']}")
    if s["supervised_padding_positions"]:
        lines.append(f"  labels on padding      {s['supervised_padding_positions']} positions")
    lines.append(f"  row 0 tokens           {s['first_row']}")
    lines.append(f"  row 0 targets          {['-' if t == -100 else t for t in s['first_row_targets']]}"
                 .replace("'-'", "-"))
    if s.get("note"):
        lines.append(f"  note: {s['note']}")
    return "\n".join(lines)


NAME = "batch"
USAGE = "batch STEP"
HELP = "statistics of the batch the loop saw at a step"
ENGINES = ("training",)
ORDER = 40                      # place in the help list


def available(scenario) -> bool:
    """Language-model batches (tokens and next-token targets); not preference pairs or
    rollouts."""
    return scenario.base.get("data") not in ("preferences", "rollouts")


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_batch_stats(batch_stats(result, step_arg(args, "batch 12")))
