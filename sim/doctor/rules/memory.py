"""Memory: growth from step to step (a leak), or flat memory and then an out-of-memory error
(a sizing problem at the first step, or one step that needs more: evaluation, a checkpoint)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, slope

LEAK_RISES = 0.8        # memory in use after a step rose at >= 80% of the steps
LEAK_GROWTH = 0.10      # ... and grew by >= 10% of its first value
FLAT = 0.02             # memory counts as flat when it grew by < 2% over the run


def memory_growth(log) -> Finding | None:
    points = log.finite("mem_mib")
    if len(points) < 4:
        return None
    values = [v for _, v in points]
    rises = sum(b > a for a, b in zip(values, values[1:])) / (len(values) - 1)
    growth = (values[-1] - values[0]) / values[0] if values[0] > 0 else 0.0
    if rises < LEAK_RISES or growth < LEAK_GROWTH:
        return None
    per_step = slope(points)
    crashed = log.out_of_memory
    return Finding(
        "memory_growth", "memory_leak",
        f"memory in use after each step grows: {fmt(values[0])} -> {fmt(values[-1])} MiB, "
        f"about {fmt(per_step)} MiB per step, rising at {rises:.0%} of steps"
        + ("; then the run ran out of memory" if crashed else ""),
        f"steps {points[0][0]}-{points[-1][0]}", 0.9 if crashed else 0.75,
        f"rises at >= {LEAK_RISES:.0%} of steps and grows >= {LEAK_GROWTH:.0%}",
        ("tensors that still carry autograd history kept across steps (a metric appended "
         "as a tensor instead of .item(), a list of losses)", "a cache that only grows",
         "gradients accumulated and never zeroed"),
        ("take a memory snapshot (torch.cuda.memory._record_memory_history, or debugsim run "
         "--memory-snapshot) and look for blocks that are allocated every step and never freed",
         "log metrics with .item() / .detach()"),
        ("oom",), "failure" if crashed else "instability")


def out_of_memory(log) -> Finding | None:
    if not log.out_of_memory:
        return None
    steps = log.steps
    memory = [v for _, v in log.finite("mem_mib")]
    flat = len(memory) >= 2 and memory[0] > 0 and (memory[-1] - memory[0]) / memory[0] < FLAT
    if len(memory) >= 4 and not flat:
        return None                                  # growth: memory_growth speaks for it
    failed_at = (steps[-1] + 1) if steps else 0
    error = (log.end.get("error") or "out of memory").split(". If reserved")[0]
    if not steps:
        return Finding(
            "out_of_memory", "memory_sizing",
            f"out of memory at the first step, before any step completed: {error}",
            "step 0", 0.9, "no step completed before the out-of-memory error",
            ("the micro-batch (or sequence length) is too large for the device",
             "a data loader that yields more than the configured batch",
             "the model, its optimizer state and activations do not fit"),
            ("print the batch's shape at step 0 next to the configured batch size",
             "micro-batches with gradient accumulation (same effective batch), activation "
             "checkpointing, mixed precision"),
            ("oom", "oom_13b"), "failure")
    eval_every = log.config.get("eval_every") or 0
    at_eval = bool(eval_every) and (failed_at + 1) % eval_every == 0
    where = f"step {failed_at}" + (f" (an evaluation step: eval_every={eval_every})"
                                   if at_eval else "")
    return Finding(
        "out_of_memory", "memory_spike",
        f"memory in use was flat ({fmt(memory[0])} MiB) for {len(steps)} steps, then out of "
        f"memory at {where}" if flat else
        f"out of memory at {where} after {len(steps)} steps (memory was not logged)",
        where, 0.9 if flat and at_eval else 0.7 if flat else 0.4,
        f"memory grew < {FLAT:.0%} over the steps before the error",
        ("one step does more than the others: evaluation without torch.no_grad() (it keeps "
         "activations for a backward that never comes), a bigger evaluation batch, "
         "checkpoint saving", "an unusually long batch"),
        ("find what runs at the failing step that does not run at the others",
         "run evaluation under torch.no_grad() / model.eval()"),
        ("oom",), "failure")


RULES = (memory_growth, out_of_memory)
