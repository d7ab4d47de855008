"""Tells as data: the signal that tells a cause apart, as a test on the broken run.

A scenario's cause declares `signal=Tell(where, holds)`: where a learner sees it (a probe or a
plot) and a predicate on the broken run that is true for this cause and false for the other
causes of the scenario. `debugsim dev check` and the test suite check both directions over
seeds and keys, so a tell that points the wrong way fails the build. The predicates below are
the building blocks; each reads only what a learner's probes show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .result import RunResult, nonfinite_steps


@dataclass(frozen=True)
class Tell:
    where: str                              # the probe or plot that shows it, e.g. "plot grad_norm"
    holds: Callable[[RunResult], bool]      # true on this cause's broken run, false on the others


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def grad_norm_climbs_before_nonfinite(factor: float) -> Callable[[RunResult], bool]:
    """Before the first non-finite step, the gradient norm grew `factor`-fold from step 0."""
    def holds(run: RunResult) -> bool:
        bad = nonfinite_steps(run)
        if not bad or bad[0] < 2:
            return False
        norms = _finite(r["grad_norm"] for r in run.records if r["step"] < bad[0])
        return len(norms) >= 2 and max(norms) >= factor * norms[0]
    return holds


def isolated_nonfinite(run: RunResult) -> bool:
    """Non-finite steps with finite steps after them: particular batches, not a blow-up."""
    bad = set(nonfinite_steps(run))
    return bool(bad) and any(r["step"] > min(bad) and r["step"] not in bad
                             and r["loss"] is not None for r in run.records)


def out_of_memory_at_step(step: int) -> Callable[[RunResult], bool]:
    def holds(run: RunResult) -> bool:
        return run.status == "oom" and len(run.records) <= step
    return holds


def memory_climbs(mib_per_step: float) -> Callable[[RunResult], bool]:
    """Memory in use after each step grows by at least this much per step on average."""
    def holds(run: RunResult) -> bool:
        used = _finite(r.get("mem_mib") for r in run.records)
        return len(used) >= 4 and (used[-1] - used[0]) / (len(used) - 1) >= mib_per_step
    return holds


def out_of_memory_after_flat_steps(steps: int) -> Callable[[RunResult], bool]:
    """At least `steps` steps with flat memory, then an out-of-memory error."""
    def holds(run: RunResult) -> bool:
        used = _finite(r.get("mem_mib") for r in run.records)
        return (run.status == "oom" and len(used) >= steps
                and max(used) - min(used) < 0.05 * max(used))
    return holds


def summary_at_most(key: str, limit: float) -> Callable[[RunResult], bool]:
    def holds(run: RunResult) -> bool:
        value = run.summary.get(key)
        return value is not None and math.isfinite(value) and value <= limit
    return holds


def summary_at_least(key: str, limit: float) -> Callable[[RunResult], bool]:
    def holds(run: RunResult) -> bool:
        value = run.summary.get(key)
        return value is not None and math.isfinite(value) and value >= limit
    return holds


def all_of(*tests: Callable[[RunResult], bool]) -> Callable[[RunResult], bool]:
    return lambda run: all(test(run) for test in tests)


def category_share_at_least(name: str, share: float) -> Callable[[RunResult], bool]:
    """One category holds at least `share` of the per-GPU memory (planner runs: the `plan`
    probe's share column)."""
    def holds(run: RunResult) -> bool:
        breakdown = run.summary.get("breakdown_gb") or {}
        total = sum(breakdown.values())
        return total > 0 and breakdown.get(name, 0) >= share * total
    return holds


def trainable_share_at_least(share: float) -> Callable[[RunResult], bool]:
    """The model that trained has at least `share` of its parameters trainable (planner runs:
    the `plan` probe's print_trainable_parameters line)."""
    def holds(run: RunResult) -> bool:
        trainable, everything = run.summary.get("trainable_params"), run.summary.get("all_params")
        return bool(everything) and trainable is not None and trainable >= share * everything
    return holds


def loss_spikes(factor: float, within: int) -> Callable[[RunResult], bool]:
    """Within the first `within` steps the loss rises to `factor` x its first value."""
    def holds(run: RunResult) -> bool:
        losses = [r["loss"] for r in run.records[:within]]
        first = losses[0] if losses else None
        return bool(first) and any(v is None or v >= factor * first for v in losses)
    return holds


def loss_never_rises(by: float) -> Callable[[RunResult], bool]:
    """The loss never rises more than `by` from one step to the next (and stays finite)."""
    def holds(run: RunResult) -> bool:
        losses = [r["loss"] for r in run.records]
        return (len(losses) > 1 and None not in losses
                and all(b - a <= by for a, b in zip(losses, losses[1:])))
    return holds


def kv_cache_changes_text(run: RunResult) -> bool:
    """Greedy text decoded without the KV cache differs from the cached text."""
    prepared = run.prepared
    if not run.samples or not prepared.config.kv_cache:
        return False
    from . import runs
    uncached = prepared.with_fixes(prepared.fix_ids, {**prepared.sets, "kv_cache": False})
    return runs.execute(uncached).samples != run.samples


def lr_climbs_past_config(factor: float) -> Callable[[RunResult], bool]:
    """The lr the optimizer used (the log's lr column) rises to `factor` x the configured lr."""
    def holds(run: RunResult) -> bool:
        used = _finite(r["lr"] for r in run.records)
        return bool(used) and max(used) >= factor * run.prepared.config.lr
    return holds


def nonfinite_throughout_from(step: int) -> Callable[[RunResult], bool]:
    """Non-finite by `step` at the latest, and at every step after the first: a forward pass
    broken from the start, not particular batches and not a climb."""
    def holds(run: RunResult) -> bool:
        bad = nonfinite_steps(run)
        return bool(bad) and bad[0] <= step and bad == list(range(bad[0], len(run.records)))
    return holds


def cache_diverges_first_at(*steps) -> Callable[[RunResult], bool]:
    """The `kvdiff` probe's last line: the first step at which cached and uncached logits
    differ, request by request (None: they agree on every step)."""
    def holds(run: RunResult) -> bool:
        from .probes.kvdiff import first_divergent_steps
        return run.status == "completed" and first_divergent_steps(run) == tuple(steps)
    return holds


def prompts_diverge_at(step: int, longest_too: bool) -> Callable[[RunResult], bool]:
    """The `kvdiff` probe's prompt-by-prompt lines: no prompt first differs at another step
    than `step` (one may agree throughout: a prompt of one repeated word reads the same at any
    position), and the longest prompts of each request differ there too (`longest_too`: at
    least one of them does) or all agree on every step while a shorter one differs."""
    def holds(run: RunResult) -> bool:
        from .probes.kvdiff import divergent_prompts
        found = run.status == "completed" and divergent_prompts(run)
        if not found:
            return False
        rows = [(words == max(w for w, _ in request), first)
                for request in found for words, first in request]
        if any(first not in (step, None) for _, first in rows):
            return False
        if longest_too:
            return any(first == step for longest, first in rows if longest)
        return (all(first is None for longest, first in rows if longest)
                and any(first == step for longest, first in rows if not longest))
    return holds


def _first_batch(run: RunResult):
    """The batch of step 0 as the loss saw it (what `mask ROW 0` shows row by row)."""
    from .probes.batch import rebuild_batch
    return rebuild_batch(run, 0)[0]


def eos_in_first_batch(as_input: bool, as_label: bool) -> Callable[[RunResult], bool]:
    """In the batch of step 0, EOS does (or does not) appear among the input tokens, and does
    (or does not) appear as a label."""
    def holds(run: RunResult) -> bool:
        from .data import EOS
        batch = _first_batch(run)
        return (bool((batch.tokens == EOS).any()) == as_input
                and bool((batch.targets == EOS).any()) == as_label)
    return holds


def labels_before_separator(run: RunResult) -> bool:
    """In the batch of step 0, some position before a row's SEP carries a label: the loss
    sees prompt tokens."""
    from .data import IGNORE, SEP
    batch = _first_batch(run)
    seen_sep = (batch.tokens == SEP).int().cummax(dim=1).values.bool()
    return bool(((batch.targets != IGNORE) & ~seen_sep).any())


def no_update_while_gradients_grow(run: RunResult) -> bool:
    """No step moved the weights (update/param is 0 throughout), while the gradient norm is
    non-zero and ends at least twice where it started (gradients nobody steps or clears)."""
    ratios = [r.get("update_ratio") for r in run.records]
    norms = _finite(r["grad_norm"] for r in run.records)
    return (bool(ratios) and all(v == 0 for v in ratios) and len(norms) >= 2
            and norms[0] > 0 and norms[-1] >= 2 * norms[0])


def gradient_zero_throughout(run: RunResult) -> bool:
    """The global gradient norm is exactly zero at every step: no gradient reaches anything."""
    norms = [r["grad_norm"] for r in run.records]
    return bool(norms) and all(v == 0 for v in norms)


def weights_move_every_step(run: RunResult) -> bool:
    """Every step changed the weights (update/param above zero)."""
    ratios = [r.get("update_ratio") for r in run.records]
    return bool(ratios) and all(v is not None and v > 0 for v in ratios)


def grad_norm_ramps(factor: float, last: int = 10) -> Callable[[RunResult], bool]:
    """Every one of the last `last` steps logs a gradient norm at least `factor` x step 0's:
    gradients that keep growing instead of settling back (what piles up when nothing clears
    them)."""
    def holds(run: RunResult) -> bool:
        norms = [r["grad_norm"] for r in run.records]
        tail = norms[-last:]
        return (len(norms) > last and norms[0] is not None and norms[0] > 0
                and None not in tail and min(tail) >= factor * norms[0])
    return holds


def first_batch_smaller_than_config(run: RunResult) -> bool:
    """The batch of step 0 (the `batch` probe) holds fewer rows than config.json's
    batch_size."""
    return _first_batch(run).size < run.prepared.config.batch_size


def none_of(*tests: Callable[[RunResult], bool]) -> Callable[[RunResult], bool]:
    return lambda run: not any(test(run) for test in tests)


def grad_norm_sawtooth(period: int, last: int = 20) -> Callable[[RunResult], bool]:
    """Over the last `last` steps, the gradient norm averaged by the step's place in a cycle of
    `period` steps differs at least 2x between places: a norm that climbs and falls back on a
    fixed schedule (the `plot grad_norm` sawtooth), not one that is noisy or climbs for good."""
    def holds(run: RunResult) -> bool:
        tail = run.records[-last:]
        if len(tail) < last or any(r["grad_norm"] is None for r in tail):
            return False
        by_place = [[r["grad_norm"] for r in tail if r["step"] % period == place]
                    for place in range(period)]
        means = [sum(values) / len(values) for values in by_place]
        return min(means) > 0 and max(means) >= 2 * min(means)
    return holds


def heldout_rows_in_training_set(run: RunResult) -> bool:
    """Some held-out sequence is also a sequence the run trained on (one epoch of its data set
    checked): the held-out loss is measured on memorised rows."""
    from .data import make_stream
    config = run.prepared.config
    if not config.train_sequences:
        return False
    stream = make_stream(config)
    held = {tuple(row) for row in stream.eval_batch().tokens.tolist()}
    steps = -(-config.train_sequences // config.batch_size)
    return any(tuple(row) in held for step in range(steps)
               for row in stream.batch(step, 0).tokens.tolist())


def any_of(*tests: Callable[[RunResult], bool]) -> Callable[[RunResult], bool]:
    return lambda run: any(test(run) for test in tests)


def logged_logratios_zero(run: RunResult) -> bool:
    """DPO: the log-ratios the run's own loss logged (chosen and rejected) are exactly zero at
    every step."""
    logged = [(r.get("chosen_logratio"), r.get("rejected_logratio")) for r in run.records]
    return bool(logged) and all(c == 0 and r == 0 for c, r in logged)


def logged_all_zero(name: str) -> Callable[[RunResult], bool]:
    """The signal `name` the run logged is exactly zero at every step it was logged."""
    def holds(run: RunResult) -> bool:
        logged = [r.get(name) for r in run.records if r.get(name) is not None]
        return bool(logged) and all(value == 0 for value in logged)
    return holds
