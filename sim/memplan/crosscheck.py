"""Cross-check the analytic planner against the simulated device's allocation tracker.

The planner (:func:`sim.memplan.plan_memory`) predicts bytes per category from shapes
alone; ``sim.device.SimulatedDevice`` counts every real tensor storage a short training
run of ``sim.models.TinyTransformer`` creates.  :func:`crosscheck` runs both on the same
model and returns one :class:`Row` per category with the difference and, where the two
differ, why.  ``explained`` is the number of bytes the reason accounts for, computed from
the config's shapes, so that ``tracker - planner == explained`` can be checked exactly.

What is compared (default config: 2 layers, d 48, 4 heads, vocab 16, batch 32 x seq 24):

* parameters / gradients: 4 B/param, exact (gradients = bytes freed by ``zero_grad``);
* optimizer state after the first step: 8 B/param plus AdamW's per-tensor ``step`` scalar;
* activations: what is alive at the end of the forward pass (saved for backward, the
  logits and the loss) against the planner's activations + logits.  The planner's
  generalised Korthikanti list, evaluated at fp32 (elem 4) with no dropout and unfused
  attention, matches the ``s*b*h`` and ``a*s*s*b`` terms exactly; the tracker also holds
  LayerNorm mean/rstd, the log-softmax output, the causal masks, the rotary tables and a
  few loss scalars;
* inputs: token and target ids (int64), which the planner does not model;
* peak: the tracker's peak against the planner's total.

torch is imported only when :func:`crosscheck` runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .accounting import plan_memory
from .arch import Architecture

# Scalars the loss code leaves alive at the end of the forward pass (markov data, no
# padding): nll_loss output (4) + its total_weight (4), n_tokens = (targets != IGNORE).sum()
# (int64, 8), n_tokens.clamp(min=1) (int64, 8, saved by the division), the mean loss (4).
LOSS_SCALAR_BYTES = 28
# The training loop's ``scaled = loss / grad_accum_steps`` is created in the gradients phase.
SCALED_LOSS_BYTES = 4


@dataclass(frozen=True)
class Row:
    category: str
    planner: int
    tracker: int
    reason: str = ""
    explained: int | None = 0     # bytes of (tracker - planner) the reason accounts for; None: not itemised

    @property
    def difference(self) -> int:
        return self.tracker - self.planner

    @property
    def ratio(self) -> float:
        return self.tracker / self.planner if self.planner else float("inf")


def tiny_architecture(config=None) -> Architecture:
    """``TinyTransformer`` as an :class:`Architecture` (parameter count equal to the module's).

    Token embedding, rotary positions (no table), pre-LN blocks with LayerNorm (weight+bias),
    fused qkv Linear(d,3d) + proj Linear(d,d) with biases (= q,k,v,o with biases), plain
    GELU MLP d->4d->d with biases, final LayerNorm, untied bias-free head, no dropout.
    """
    from ..config import TrainConfig

    c = config or TrainConfig()
    if c.model != "transformer":
        raise ValueError(f"tiny_architecture describes the transformer, not model={c.model!r}")
    return Architecture(
        name=f"tiny-transformer-{c.n_layer}x{c.d_model}", layers=c.n_layer, hidden=c.d_model,
        heads=c.n_head, intermediate=4 * c.d_model, vocab=c.vocab_size, mlp="plain",
        positional="rotary", max_positions=c.seq_len, norm="layernorm", bias=True,
        tied_embeddings=False, dropout=False, attn_dropout=False, source="sim/models.py TinyTransformer")


def crosscheck_config(config=None):
    """The run :func:`crosscheck` measures: the config's shapes, 2 fp32 AdamW steps, tracked.

    The held-out evaluation (no grad) uses the training batch size, so that its forward pass
    cannot set the peak (with the default eval batch of 64 it does for small training batches).
    """
    from ..config import TrainConfig

    c = config or TrainConfig()
    return dataclasses.replace(
        c, model="transformer", data="markov", steps=2, memory_budget_mib=0.0,
        precision="fp32", optimizer="adamw", grad_accum_steps=1, activation_checkpointing=False,
        eval_every=0, eval_batch_size=c.batch_size, device="cpu")


def _measure(config) -> dict:
    """Train briefly and read the tracker at the loop's hook points."""
    from ..callbacks import Callback
    from ..loop import train

    class Probe(Callback):
        def __init__(self):
            self.at = {}

        def _snap(self, run, tag):
            if run.step == 0:
                self.at[tag] = dict(run.device.by_category)

        def on_loss(self, run, loss_sum, n_tokens, loss):
            self._snap(run, "forward")        # end of forward: everything saved for backward

        def on_after_backward(self, run):
            self._snap(run, "backward")

        def on_step_end(self, run):         # after optimizer.step() and zero_grad(set_to_none)
            self._snap(run, "step")

    probe = Probe()
    run = train(config, [probe], track_memory=True)
    n_tensors = sum(1 for _ in run.model.parameters())
    return {"at": probe.at, "peak": run.device.peak, "peak_breakdown": dict(run.device.peak_breakdown),
            "n_param_tensors": n_tensors, "numel": sum(p.numel() for p in run.model.parameters())}


def crosscheck(config=None) -> list[Row]:
    """Planner vs tracker for the tiny transformer; see the module docstring."""
    cfg = crosscheck_config(config)
    arch = tiny_architecture(cfg)
    s, b, L, V = cfg.seq_len, cfg.batch_size, cfg.n_layer, cfg.vocab_size
    plan = plan_memory(arch, method="full", precision="fp32", master_weights=False, optimizer="adamw",
                       batch=b, seq=s, flash=False, checkpointing=False)
    m = _measure(cfg)
    if m["numel"] != arch.num_params:
        raise AssertionError(f"tiny_architecture counts {arch.num_params:,} parameters, the model has {m['numel']:,}")
    at, g = m["at"], plan.gpu
    # each AdamW state holds a 0-dim fp32 `step` tensor per parameter tensor
    step_bytes = 4 * m["n_param_tensors"]
    ln_stats = (2 * L + 1) * 2 * s * b * 4          # mean + rstd of every LayerNorm, fp32
    log_softmax = 4 * s * b * V                      # cross_entropy saves log_softmax(logits) too
    masks = L * s * s                                # ~allowed (bool) recomputed and saved per layer
    rope = 2 * s * (arch.d_head // 2) * 4           # cos and sin tables
    act_extra = ln_stats + log_softmax + masks + rope + LOSS_SCALAR_BYTES
    grads = at["backward"]["gradients"] - at["step"]["gradients"]   # what zero_grad released
    planned_acts = g["activations"] + g["logits"]
    total = plan.gpu_total
    return [
        Row("parameters", g["weights"], at["forward"]["parameters"],
            "" if g["weights"] == at["forward"]["parameters"] else "unexpected"),
        Row("gradients", g["gradients"], grads,
            f"tracker: the .grad storages zero_grad frees (its raw counter also holds the loop's "
            f"{SCALED_LOSS_BYTES} B `loss / grad_accum` scalar)"),
        Row("master_weights", g["master_weights"], 0, "fp32 training keeps no master copy"),
        Row("optimizer_states", g["optimizer_states"], at["step"]["optimizer_state"],
            f"AdamW's per-parameter `step`: a 4 B fp32 scalar per tensor x {m['n_param_tensors']} tensors",
            explained=step_bytes),
        Row("activations+logits", planned_acts, at["forward"]["activations"],
            f"s*b*h and a*s*s*b terms agree (fp32, no dropout, explicit attention); tracker adds LayerNorm "
            f"mean/rstd {ln_stats:,}, log-softmax copy of the logits {log_softmax:,}, causal masks {masks:,}, "
            f"rotary cos/sin {rope:,}, loss scalars {LOSS_SCALAR_BYTES}",
            explained=act_extra),
        Row("inputs", 0, at["forward"]["inputs"],
            "planner does not model inputs: token + target ids, int64 (2*b*s*8)", explained=2 * b * s * 8),
        Row("peak", total, m["peak"], _peak_reason(m["peak_breakdown"], g["gradients"]), explained=None),
    ]


def _peak_reason(breakdown: dict, param_grad_bytes: int) -> str:
    """The tracker's breakdown at its peak, against the planner's sum of per-category totals."""
    return (f"at the tracker's peak: activations {breakdown['activations']:,}, gradients "
            f"{breakdown['gradients']:,} (param grads alone {param_grad_bytes:,}), optimizer "
            f"{breakdown['optimizer_state']:,}, inputs {breakdown['inputs']:,}; backward frees saved "
            f"activations while it creates activation gradients and .grad, which the planner does not model "
            f"(it adds each category's full size)")


def render(rows) -> str:
    """A plain-text table: category, planner, tracker, difference, ratio, reason (bytes)."""
    head = ("category", "planner B", "tracker B", "diff B", "ratio", "reason")
    body = [(r.category, f"{r.planner:,}", f"{r.tracker:,}", f"{r.difference:+,}",
             f"{r.ratio:.4f}" if r.planner else "-", r.reason)
            for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]
    lines = []
    for cells in [head, *body]:
        lines.append("  ".join(c.rjust(w) if 0 < i < 5 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells[:5], widths))) + "  " + cells[5])
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
