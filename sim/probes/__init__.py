"""Probes: what a learner can look at after a run, before naming a cause.

Each probe takes a `RunResult` (from `sim.runner.execute`) and returns plain data (dicts, lists,
floats) that a notebook can use directly; each has a `render_*` companion that turns that data
into text for the terminal:

    log_table(result, start, end, columns)   the per-step records as an aligned table (text)
    layer_grads(result, step)                 per-layer gradient norms at one step
    batch_stats(result, step, micro)          the exact batch the loop saw at a step, measured
    memory_breakdown(result)                  peak memory by category, per-step use, the budget
    lr_range_test(result or config)           the LR finder (Smith 2015), with a suggestion
    anomaly(result)                           replays the first non-finite step and names the op

Probes never raise for a run that failed (out of memory, non-finite values, no steps at all):
such runs answer with a `note`. Bad arguments (a step the run never reached) raise
`ProbeError`, a `ValueError` with a one-line message.

This package imports torch only inside the probes that train or rebuild data, so importing it
stays cheap.
"""
from ._common import NONFINITE_MARK, ProbeError, end_note, nonfinite_steps
from .table import log_rows, log_table
from .gradients import layer_grads, render_layer_grads
from .batch import rebuild_batch, batch_stats, render_batch_stats
from .memory import memory_breakdown, render_memory_breakdown
from .lr_range import lr_range_test, render_lr_range_test
from .replay import anomaly, render_anomaly

__all__ = [
    "end_note",
    "NONFINITE_MARK",
    "ProbeError",
    "nonfinite_steps",
    "log_rows",
    "log_table",
    "layer_grads",
    "render_layer_grads",
    "rebuild_batch",
    "batch_stats",
    "render_batch_stats",
    "memory_breakdown",
    "render_memory_breakdown",
    "lr_range_test",
    "render_lr_range_test",
    "anomaly",
    "render_anomaly",
]
