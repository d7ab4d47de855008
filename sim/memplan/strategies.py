"""Enumerate memory-saving strategy combinations and rank those that fit a GPU.

Cost order (lower = cheaper in quality/speed; a combination costs the sum of its
options).  Quality-neutral options come first, ordered by slowdown; options that
change what is trained, or how precisely, come last:

=========  ====  ================================================================
option     cost  reason
=========  ====  ================================================================
flash      0     fused exact attention: faster *and* drops the s*s score memory
ckpt       2     recomputes each layer's forward in backward: ~+33% compute, exact
zero1      3     shards optimizer states: same communication volume as DDP
zero2      3     also shards gradients: reduce-scatter instead of all-reduce, same volume
zero3      5     also shards weights: extra all-gather per layer, ~1.5x DDP traffic
offload    6     optimizer step on the CPU over PCIe: often 1.5-3x slower steps
adam8bit   7     block-wise 8-bit Adam moments: near-parity quality, small risk
lora       10    trains low-rank adapters only: less capacity than full fine-tuning
qlora      12    LoRA on a 4-bit NF4 base: adds quantisation error, dequant overhead
=========  ====  ================================================================

Among fitting combinations only *minimal* ones are listed: a combination is
dropped when a fitting one exists that uses a subset of its options (a lower or
equal ZeRO stage, and full <= lora <= qlora).  Ties break on lower per-GPU memory.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .accounting import MemoryPlan, Strategy, plan_memory

OPTION_COSTS: dict[str, tuple[int, str]] = {
    "flash": (0, "fused exact attention: faster and drops the s*s score memory"),
    "ckpt": (2, "recomputes each layer's forward in backward: ~+33% compute, exact"),
    "zero1": (3, "shards optimizer states: same communication volume as DDP"),
    "zero2": (3, "also shards gradients: reduce-scatter instead of all-reduce, same volume"),
    "zero3": (5, "also shards weights: an extra all-gather per layer, ~1.5x DDP traffic"),
    "offload": (6, "optimizer step on the CPU over PCIe: often 1.5-3x slower steps"),
    "adam8bit": (7, "block-wise 8-bit Adam moments: near-parity quality, small risk"),
    "lora": (10, "trains low-rank adapters only: less capacity than full fine-tuning"),
    "qlora": (12, "LoRA on a 4-bit NF4 base: quantisation error plus dequantisation overhead"),
    "nf4-weights": (8, "4-bit NF4 weights for serving: small quality loss, dequant overhead"),
}
METHODS_ORDERED = ("full", "lora", "qlora")
_METHOD_ORDER = {m: i for i, m in enumerate(METHODS_ORDERED)}


def strategy_options(s: Strategy, base: Strategy | None = None) -> list[str]:
    """Option keys a strategy uses (``flash`` only when ``base`` had it off)."""
    opts = []
    if s.method != "full":
        opts.append("nf4-weights" if s.inference and s.method == "qlora" else s.method)
    if s.checkpointing and not s.inference:
        opts.append("ckpt")
    if s.zero:
        opts.append(f"zero{s.zero}")
    if s.offload:
        opts.append("offload")
    if s.optimizer == "adam8bit" and not s.inference:
        opts.append("adam8bit")
    if s.flash and base is not None and not base.flash:
        opts.append("flash")
    return [o for o in opts if o in OPTION_COSTS]


def strategy_cost(s: Strategy, base: Strategy | None = None) -> int:
    """Quality/speed cost of a strategy (sum of its options' costs; see module docstring)."""
    return sum(OPTION_COSTS[o][0] for o in strategy_options(s, base))


@dataclass
class RankedStrategy:
    strategy: Strategy
    plan: MemoryPlan
    cost: int
    options: list[str]

    @property
    def label(self) -> str:
        """e.g. ``full+ckpt+zero2`` (method, then the options it adds)."""
        head = ("nf4-weights" if self.strategy.method == "qlora" else "inference") if self.strategy.inference \
            else self.strategy.method
        return "+".join([head] + [o for o in self.options if o not in ("lora", "qlora", "nf4-weights")])

    @property
    def reasons(self) -> list[str]:
        return [f"{o}: {OPTION_COSTS[o][1]}" for o in self.options]

    def to_dict(self, gpu_bytes: int) -> dict:
        return {"label": self.label, "options": self.options, "cost": self.cost, "reasons": self.reasons,
                "per_gpu": dict(self.plan.gpu), "per_gpu_total": self.plan.gpu_total,
                "cpu_per_rank_total": self.plan.cpu_total, "fits": self.plan.fits(gpu_bytes)}


def candidate_strategies(base: Strategy) -> list[Strategy]:
    """All combinations varied around ``base`` (its batch, seq, precision, LoRA shape stay fixed)."""
    flashes = sorted({base.flash, True})
    if base.inference:
        return [replace(base, method=m, flash=f) for m in sorted({base.method, "qlora"}) for f in flashes]
    zeros = (0, 1, 2, 3) if base.gpus > 1 else (0,)
    optimizers = sorted({base.optimizer} | ({"adam8bit"} if base.optimizer == "adamw" else set()))
    out = []
    for m, ck, z, off, opt, f in itertools.product(METHODS_ORDERED, (False, True), zeros, (False, True),
                                                   optimizers, flashes):
        out.append(replace(base, method=m, checkpointing=ck, zero=z, offload=off, optimizer=opt, flash=f))
    return out


def _le(a: Strategy, b: Strategy, base: Strategy) -> bool:
    """True when ``a`` uses a subset of ``b``'s compromises."""
    oa, ob = set(strategy_options(a, base)), set(strategy_options(b, base))
    oa -= {"zero1", "zero2", "zero3", "lora", "qlora"}
    ob -= {"zero1", "zero2", "zero3", "lora", "qlora"}
    return (_METHOD_ORDER[a.method] <= _METHOD_ORDER[b.method] and a.zero <= b.zero and oa <= ob)


def rank_strategies(model, gpu_bytes: int, base: Strategy | None = None, *, minimal: bool = True,
                    **overrides) -> list[RankedStrategy]:
    """Strategy combinations whose per-GPU memory fits ``gpu_bytes``, cheapest first.

    ``base`` (plus ``overrides``) fixes the workload: model precision, batch, seq,
    GPU count, LoRA rank/targets.  With ``minimal`` (default) combinations that add
    needless compromises on top of a fitting one are dropped.  Returns ``[]`` when
    nothing fits; use :func:`closest_strategy` then.
    """
    base = replace(base or Strategy(), **overrides)
    evaluated = _evaluate(model, base)
    fitting = [r for r in evaluated if r.plan.fits(gpu_bytes)]
    if minimal:
        fitting = [r for r in fitting
                   if not any(o is not r and _le(o.strategy, r.strategy, base)
                              and not _le(r.strategy, o.strategy, base) for o in fitting)]
        # identical option sets (e.g. adamw vs adamw) collapse to one
        seen, unique = set(), []
        for r in sorted(fitting, key=lambda r: (r.cost, r.plan.gpu_total)):
            key = r.label
            if key not in seen:
                seen.add(key)
                unique.append(r)
        return unique
    return sorted(fitting, key=lambda r: (r.cost, r.plan.gpu_total))


def closest_strategy(model, base: Strategy | None = None, **overrides) -> RankedStrategy:
    """The combination with the least per-GPU memory (for 'nothing fits' reports)."""
    base = replace(base or Strategy(), **overrides)
    return min(_evaluate(model, base), key=lambda r: (r.plan.gpu_total, r.cost))


def _evaluate(model, base: Strategy) -> list[RankedStrategy]:
    out = []
    for s in candidate_strategies(base):
        try:
            plan = plan_memory(model, s)
        except ValueError:      # e.g. LoRA without an architecture (bare parameter count)
            continue
        out.append(RankedStrategy(s, plan, strategy_cost(s, base), strategy_options(s, base)))
    return out
