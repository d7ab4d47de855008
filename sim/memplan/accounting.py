"""Byte accounting for training and inference memory (no torch needed).

Model states (per parameter, before sharding), following ZeRO (Rajbhandari et al. 2019):

=================  ===============  ==========================================
category           bytes / param    note
=================  ===============  ==========================================
weights            2 (fp16/bf16)    4 in fp32; QLoRA base: 0.5 + constants
gradients          2 (fp16/bf16)    only for trainable params
master_weights     4                fp32 copy kept by mixed precision
optimizer_states   8 / 4 / 2        AdamW two fp32 moments / SGD momentum / 8-bit Adam
=================  ===============  ==========================================

Mixed-precision AdamW is therefore 2 + 2 + (4 + 8) = 16 B/param (the paper's K = 12).

ZeRO stage 1 shards optimizer states (+ master weights, which ZeRO counts as
optimizer state) over N data-parallel GPUs, stage 2 also gradients, stage 3 also
the weights (FSDP FULL_SHARD); stage 3 then needs a transient all-gathered copy of
the largest wrapped unit.  ``offload`` moves optimizer states + master weights to
CPU RAM (reported separately, per rank).

Activations use Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models"), per layer ``sbh(34 + 5as/h)`` bytes in 16-bit for a
GPT-style layer (4h GELU MLP, multi-head attention, dropout).  The same
component list is generalised to SwiGLU MLPs, grouped-query attention and
dropout-free models, and reduces exactly to the paper's formula for GPT-2
(pinned in tests).  A fused/flash attention kernel never stores the ``a*s*s``
score/softmax/dropout tensors, i.e. drops the ``5as/h`` term.  With full
activation checkpointing only each layer's input (``2sbh`` per layer) is kept,
plus one layer's full activations while it is recomputed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .arch import Architecture
from .units import fmt_bytes

CATEGORIES = {
    "weights": "model weights held on the GPU (frozen base + trainable)",
    "gradients": "gradients of trainable parameters",
    "master_weights": "fp32 master copy of trainable weights (mixed precision)",
    "optimizer_states": "optimizer moments (AdamW m and v, SGD momentum, ...)",
    "activations": "activations saved for backward (or the inference prefill working set)",
    "logits": "fp32 logits kept for the cross-entropy backward (4*s*b*vocab)",
    "kv_cache": "key/value cache for generation",
    "gather_buffer": "ZeRO-3/FSDP all-gathered copy of the largest wrapped unit",
}

METHODS = ("full", "lora", "qlora")
PRECISIONS = {"fp32": 4, "fp16": 2, "bf16": 2}
OPTIMIZER_BYTES = {"adamw": 8, "sgd": 4, "adam8bit": 2}

NF4_BYTES = 0.5                      # 4-bit weights
QUANT_BLOCK = 64                     # QLoRA first-level block size
DQ_BLOCK = 256                       # double-quantisation block size (of constants)


def quant_constant_bits(double_quant: bool) -> float:
    """Bits per parameter spent on NF4 quantisation constants (QLoRA paper, section 3).

    blocksize 64 with an fp32 absmax: 32/64 = 0.5 bit/param.
    double quantisation (8-bit constants, fp32 second-level per 256 blocks):
    8/64 + 32/(64*256) = 0.127 bit/param.
    """
    if double_quant:
        return 8 / QUANT_BLOCK + 32 / (QUANT_BLOCK * DQ_BLOCK)
    return 32 / QUANT_BLOCK


def nf4_bytes_per_param(double_quant: bool = True) -> float:
    return NF4_BYTES + quant_constant_bits(double_quant) / 8


def resolve_lora_targets(targets, arch: Architecture) -> tuple[str, ...]:
    """Normalise target names ("q,v", "all-linear", "q_proj", ...) for ``arch``."""
    from .arch import TARGET_ALIASES

    if isinstance(targets, str):
        targets = [t for t in targets.replace(" ", "").split(",") if t]
    shapes = arch.linear_shapes()
    out: list[str] = []
    for t in targets:
        t = t.lower()
        if t in ("all-linear", "all_linear", "all"):
            out.extend(shapes)
            continue
        if t in ("attention", "attn"):
            out.extend(["q", "k", "v", "o"])
            continue
        if t in ("mlp", "ffn"):
            out.extend(k for k in shapes if k not in ("q", "k", "v", "o"))
            continue
        canon = TARGET_ALIASES.get(t)
        if canon is None:
            raise ValueError(f"unknown LoRA target {t!r} (use q,k,v,o,gate,up,down, attention, mlp or all-linear)")
        if canon not in shapes:
            raise ValueError(f"LoRA target {t!r} does not exist in a {arch.mlp} MLP (has: {', '.join(shapes)})")
        out.append(canon)
    if not out:
        raise ValueError("no LoRA targets given")
    return tuple(dict.fromkeys(out))


def lora_params(arch: Architecture, rank: int, targets) -> int:
    """Trainable LoRA parameters: ``r * (d_in + d_out)`` per adapted matrix per layer."""
    shapes = arch.linear_shapes()
    return arch.layers * sum(rank * sum(shapes[t]) for t in resolve_lora_targets(targets, arch))


def kv_cache_bytes_per_token(arch: Architecture, bytes_per_value: int = 2) -> int:
    """``2 (K and V) x layers x kv_heads x head_dim x bytes`` per token."""
    return 2 * arch.layers * arch.kv_dim * bytes_per_value


def layer_activation_bytes(arch: Architecture, seq: int, batch: int, elem: int = 2,
                           flash: bool = False, training: bool = True) -> dict[str, int]:
    """Activations one transformer layer stores for backward (Korthikanti et al. 2022, sec. 4.1).

    ``elem`` is the activation element size (2 for 16-bit); dropout masks are 1 byte.
    For a GPT-style layer with dropout this is exactly ``s*b*h*(34 + 5*a*s/h)`` at elem=2.
    """
    s, b, h, i, a = seq, batch, arch.hidden, arch.intermediate, arch.heads
    sb = s * b
    drop = arch.dropout and training
    adrop = arch.attn_dropout and training
    # QKV input (norm output) + Q + K + V + attention output (input of the o-projection)
    attention = elem * sb * (h + arch.q_dim + 2 * arch.kv_dim + arch.q_dim) + (sb * h if drop else 0)
    # softmax output (+ dropout mask and dropout output); a flash kernel stores none of these
    scores = 0 if flash else elem * a * s * s * b + ((1 + elem) * a * s * s * b if adrop else 0)
    if arch.mlp == "plain":   # fc1 input, activation input, activation output (= fc2 input)
        mlp = elem * sb * (h + 2 * i)
    else:                     # input, gate pre-act, silu(gate), up, silu*up (= down input)
        mlp = elem * sb * (h + 4 * i)
    mlp += sb * h if drop else 0
    norms = 2 * elem * sb * h  # inputs of the two norms
    return {"attention": attention, "scores": scores, "mlp": mlp, "norms": norms}


def korthikanti_layer_bytes(seq: int, batch: int, hidden: int, heads: int) -> int:
    """The paper's reference figure: ``s*b*h*(34 + 5*a*s/h)`` bytes (16-bit, no recomputation)."""
    return seq * batch * hidden * 34 + 5 * heads * seq * seq * batch


@dataclass(frozen=True)
class Strategy:
    """Everything that decides memory besides the model.  Validated on construction."""

    method: str = "full"                 # full | lora | qlora
    precision: str = "bf16"              # fp32 | fp16 | bf16 (16-bit = mixed precision)
    optimizer: str = "adamw"             # adamw | sgd | adam8bit
    master_weights: bool = True          # mixed precision keeps an fp32 master copy
    zero: int = 0                        # ZeRO / FSDP stage 0-3
    gpus: int = 1                        # data-parallel GPUs (ZeRO shards over these)
    offload: bool = False                # optimizer states + master weights on CPU
    batch: int = 1                       # micro-batch per GPU
    seq: int = 2048                      # sequence length
    checkpointing: bool = False          # full activation checkpointing (per layer)
    flash: bool = True                   # fused attention: no s*s score tensors stored
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("q", "v")
    double_quant: bool = True            # QLoRA double quantisation of the constants
    inference: bool = False              # weights + KV cache instead of training state

    def __post_init__(self):
        if isinstance(self.lora_targets, str):
            object.__setattr__(self, "lora_targets", tuple(
                t for t in self.lora_targets.replace(" ", "").split(",") if t))
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZER_BYTES:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZER_BYTES)}, got {self.optimizer!r}")
        if self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero stage must be 0, 1, 2 or 3, got {self.zero!r}")
        for f in ("gpus", "batch", "seq", "lora_rank"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{f} must be a positive integer, got {v!r}")
        if self.inference and (self.zero or self.offload or self.gpus > 1):
            raise ValueError("inference is modelled on one GPU: --zero, --offload and --gpus>1 do not apply")

    @property
    def mixed(self) -> bool:
        return self.precision != "fp32"

    def label(self) -> str:
        """Short name such as ``full+ckpt+zero3+offload``."""
        parts = [self.method]
        if self.inference:
            parts = ["nf4-weights" if self.method == "qlora" else "inference"]
        if self.checkpointing and not self.inference:
            parts.append("ckpt")
        if self.zero:
            parts.append(f"zero{self.zero}")
        if self.offload:
            parts.append("offload")
        if self.optimizer != "adamw" and not self.inference:
            parts.append(self.optimizer)
        if not self.flash:
            parts.append("no-flash")
        return "+".join(parts)

    def describe(self, activations: bool = True) -> str:
        """Human summary; ``activations=False`` leaves out batch/seq/attention/checkpointing."""
        if self.inference:
            w = "4-bit NF4 weights" if self.method == "qlora" else f"{self.precision} weights"
            return (f"inference, {w}, batch {self.batch} x seq {self.seq}, "
                    f"{'flash' if self.flash else 'unfused'} attention")
        method = {"full": "full fine-tune",
                  "lora": f"LoRA r={self.lora_rank} on {','.join(self.lora_targets)}",
                  "qlora": f"QLoRA (NF4{' + double quant' if self.double_quant else ''}) "
                           f"r={self.lora_rank} on {','.join(self.lora_targets)}"}[self.method]
        prec = (f"{self.precision} mixed precision" + (" (fp32 master weights)" if self.master_weights
                                                        else " (no fp32 master copy)")) if self.mixed else "fp32"
        shard = f"ZeRO-{self.zero} over {self.gpus} GPUs" if self.zero else f"{self.gpus} GPU(s), no sharding"
        act = (f"micro-batch {self.batch} x seq {self.seq}, {'flash' if self.flash else 'unfused'} attention, "
               f"{'activation checkpointing' if self.checkpointing else 'no checkpointing'}, ") if activations else ""
        return (f"{method}, {prec}, {self.optimizer}, {act}{shard}"
                + (", optimizer offloaded to CPU" if self.offload else ""))


@dataclass
class MemoryPlan:
    """Result of :func:`plan_memory`; every figure is in bytes.

    ``gpu`` is per GPU (each data-parallel rank holds the same amount), ``cpu``
    is CPU RAM per rank (offload).  ``model_states`` is the unsharded total.
    """

    model: str
    params: int
    trainable_params: int
    strategy: Strategy
    gpu: dict[str, int]
    cpu: dict[str, int]
    model_states: dict[str, int]
    arch: Architecture | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_total(self) -> int:
        return sum(self.gpu.values())

    @property
    def cpu_total(self) -> int:
        return sum(self.cpu.values())

    @property
    def all_gpus_total(self) -> int:
        return self.gpu_total * self.strategy.gpus

    def fits(self, gpu_bytes: int) -> bool:
        return self.gpu_total <= gpu_bytes

    def headroom(self, gpu_bytes: int) -> int:
        """Bytes left on the GPU (negative: the overshoot)."""
        return gpu_bytes - self.gpu_total

    def dominant(self, n: int = 2) -> list[tuple[str, int]]:
        return sorted(((k, v) for k, v in self.gpu.items() if v), key=lambda kv: -kv[1])[:n]

    def why(self, gpu_bytes: int, unit: str = "GB") -> str:
        """One sentence: does it fit, which categories dominate, and by how much."""
        total = self.gpu_total
        parts = ", ".join(f"{k} {fmt_bytes(v, unit)} ({100 * v / total:.0f}%)" for k, v in self.dominant(2))
        basis = self.basis(unit)
        if self.fits(gpu_bytes):
            return (f"fits: {fmt_bytes(total, unit)} of {fmt_bytes(gpu_bytes, unit)} "
                    f"({100 * total / gpu_bytes:.0f}% used, {fmt_bytes(gpu_bytes - total, unit)} spare); "
                    f"largest: {parts}; {basis}.")
        return (f"does not fit: needs {fmt_bytes(total, unit)} per GPU, {fmt_bytes(total - gpu_bytes, unit)} over "
                f"{fmt_bytes(gpu_bytes, unit)} ({total / gpu_bytes:.2f}x); dominated by {parts}; {basis}.")

    def basis(self, unit: str = "GB") -> str:
        """Where the model-state bytes come from, in words."""
        s, ms = self.strategy, self.model_states
        if s.inference:
            a = self.arch
            return (f"weights {fmt_bytes(self.gpu['weights'], unit)} + KV cache {fmt_bytes(self.gpu['kv_cache'], unit)} "
                    f"({kv_cache_bytes_per_token(a, PRECISIONS[s.precision]):,} B/token x {s.seq * s.batch:,} tokens)")
        e, ob = PRECISIONS[s.precision], OPTIMIZER_BYTES[s.optimizer]
        mb = 4 if (s.mixed and s.master_weights) else 0
        states = f"{e} weights + {e} grads" + (f" + {mb} master" if mb else "") + f" + {ob} {s.optimizer}"
        shard = f", sharded ZeRO-{s.zero} over {s.gpus} GPUs" if s.zero and s.gpus > 1 else ""
        off = ", optimizer + master on CPU" if s.offload else ""
        if s.method == "full":
            return (f"full fine-tuning keeps {states} = {e + e + mb + ob} B/param x {self.params / 1e9:.2f} B params "
                    f"= {fmt_bytes(sum(ms.values()), unit)} of model states{shard}{off}")
        trainable = self.trainable_params * (e + e + mb + ob)
        base = ms["weights"] - self.trainable_params * e
        kind = (f"NF4 ({8 * nf4_bytes_per_param(s.double_quant):.3f} bits/param incl. constants, rest {s.precision})"
                if s.method == "qlora" else f"{s.precision} ({e} B/param)")
        return (f"{'QLoRA' if s.method == 'qlora' else 'LoRA'} freezes the base in {kind} = {fmt_bytes(base, unit)} "
                f"with no grads or optimizer state, and trains {self.trainable_params / 1e6:.2f} M params "
                f"({100 * self.trainable_params / self.params:.2f}%) at {e + e + mb + ob} B/param = "
                f"{fmt_bytes(trainable, unit)}{shard}{off}")

    def to_dict(self, gpu_bytes: int | None = None) -> dict:
        d = {
            "model": self.model,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "strategy": {**asdict(self.strategy), "lora_targets": list(self.strategy.lora_targets),
                         "label": self.strategy.label()},
            "units": "bytes",
            "per_gpu": dict(self.gpu),
            "per_gpu_total": self.gpu_total,
            "gpus": self.strategy.gpus,
            "all_gpus_total": self.all_gpus_total,
            "cpu_per_rank": dict(self.cpu),
            "cpu_per_rank_total": self.cpu_total,
            "cpu_all_ranks_total": self.cpu_total * self.strategy.gpus,
            "model_states_unsharded": dict(self.model_states),
            "notes": list(self.notes),
        }
        if gpu_bytes is not None:
            d.update(gpu_bytes=gpu_bytes, fits=self.fits(gpu_bytes), headroom_bytes=self.headroom(gpu_bytes),
                     why=self.why(gpu_bytes))
        return d


def _resolve_model(model) -> tuple[str, int, Architecture | None]:
    from .presets import get_preset

    if isinstance(model, Architecture):
        return model.name, model.num_params, model
    if isinstance(model, str):
        arch = get_preset(model)
        return arch.name, arch.num_params, arch
    if isinstance(model, (int, float)) and not isinstance(model, bool) and model > 0:
        return "bare parameter count", int(model), None
    raise ValueError(f"model must be an Architecture, a preset name or a positive parameter count, got {model!r}")


def _ceil_div(x: float, n: int) -> int:
    return int(math.ceil(x / n))


def plan_memory(model, strategy: Strategy | None = None, **overrides) -> MemoryPlan:
    """Account GPU (and CPU) memory for training or serving ``model``.

    ``model`` is an :class:`Architecture`, a preset name (``"llama-2-13b"``) or a
    bare parameter count (``7.5e9``: model states only, no activations).
    Strategy fields can be given as a :class:`Strategy` and/or keyword overrides::

        plan = plan_memory("llama-2-13b", method="lora", lora_rank=16, checkpointing=True)
        plan.gpu            # per-GPU bytes by category
        plan.fits(80 * 10**9)
    """
    strategy = replace(strategy or Strategy(), **overrides)
    name, P, arch = _resolve_model(model)
    s = strategy
    notes: list[str] = []
    if arch is None and s.method != "full":
        raise ValueError("LoRA/QLoRA need an architecture (a preset or layer shapes), not just --params")
    if arch is None and s.inference:
        raise ValueError("inference needs an architecture for the KV cache, not just --params")
    if arch is not None and s.seq > arch.max_positions and arch.positional == "learned":
        raise ValueError(f"{arch.name} has learned positions for only {arch.max_positions} tokens (seq {s.seq})")
    if arch is not None and s.method != "full":
        s = strategy = replace(s, lora_targets=resolve_lora_targets(s.lora_targets, arch))
    if arch is not None and arch.positional == "rotary" and s.seq > arch.max_positions:
        notes.append(f"seq {s.seq} exceeds {arch.name}'s trained context of {arch.max_positions} tokens")

    e = PRECISIONS[s.precision]           # bytes per weight / grad / activation element
    opt_b = OPTIMIZER_BYTES[s.optimizer]
    master_b = 4 if (s.mixed and s.master_weights) else 0

    # ---- weights and which parameters train --------------------------------
    if s.method == "full":
        trainable, frozen_bytes = P, 0.0
    else:
        trainable = lora_params(arch, s.lora_rank, s.lora_targets)
        if s.method == "lora":
            frozen_bytes = P * e
        else:
            lin = arch.linear_params
            frozen_bytes = lin * nf4_bytes_per_param(s.double_quant) + (P - lin) * e
            notes.append(f"QLoRA: {lin:,} block-linear weights in NF4 ({8 * nf4_bytes_per_param(s.double_quant):.3f} "
                         f"bits/param incl. constants); embeddings, norms and LM head stay {s.precision}")
    if s.inference:
        trainable = 0
        if s.method != "qlora":
            frozen_bytes = P * e
        if s.method == "lora":
            notes.append("inference: LoRA adapters assumed merged into the base weights")
    weights = frozen_bytes + trainable * e
    grads = 0 if s.inference else trainable * e
    master = 0 if s.inference else trainable * master_b
    optim = 0 if s.inference else trainable * opt_b
    model_states = {"weights": int(math.ceil(weights)), "gradients": grads,
                    "master_weights": master, "optimizer_states": optim}

    # ---- sharding (ZeRO stage k over N GPUs) ---------------------------------
    N = s.gpus
    gpu = {k: 0 for k in CATEGORIES}
    gpu["weights"] = _ceil_div(weights, N) if s.zero >= 3 else int(math.ceil(weights))
    gpu["gradients"] = _ceil_div(grads, N) if s.zero >= 2 else grads
    master_sh = _ceil_div(master, N) if s.zero >= 1 else master
    optim_sh = _ceil_div(optim, N) if s.zero >= 1 else optim
    cpu: dict[str, int] = {}
    if s.offload:
        cpu = {"master_weights": master_sh, "optimizer_states": optim_sh}
        notes.append("offload: optimizer states + fp32 master weights live in CPU RAM (optimizer step runs on CPU)")
    else:
        gpu["master_weights"], gpu["optimizer_states"] = master_sh, optim_sh
    if s.zero >= 3 and N > 1 and arch is not None:
        gpu["gather_buffer"] = arch.largest_unit_params * e
    if s.zero and N == 1:
        notes.append("ZeRO with 1 GPU shards nothing (add --gpus)")

    # ---- activations / KV cache ---------------------------------------------
    if arch is None:
        notes.append("no architecture given: activations are not counted (model states only)")
    elif s.inference:
        layer = layer_activation_bytes(arch, s.seq, s.batch, e, s.flash, training=False)
        gpu["activations"] = sum(layer.values())
        gpu["logits"] = 4 * s.batch * arch.vocab          # last position only, fp32
        gpu["kv_cache"] = kv_cache_bytes_per_token(arch, e) * s.seq * s.batch
        notes.append(f"KV cache: {kv_cache_bytes_per_token(arch, e):,} B/token = 2 x {arch.layers} layers x "
                     f"{arch.n_kv_heads} kv-heads x {arch.d_head} head_dim x {e} B; x seq {s.seq} x batch {s.batch}")
        notes.append("activations: prefill working set of one layer (freed layer by layer)")
    else:
        layer = sum(layer_activation_bytes(arch, s.seq, s.batch, e, s.flash).values())
        sbh = s.seq * s.batch * arch.hidden
        out_layer = (sbh if arch.dropout else 0) + 2 * e * sbh   # emb. dropout mask, final-norm & head inputs
        if s.checkpointing:
            gpu["activations"] = arch.layers * e * sbh + layer + out_layer
            notes.append("checkpointing: keeps each layer's input (2sbh/layer) + one layer's activations during recompute")
        else:
            gpu["activations"] = arch.layers * layer + out_layer
        gpu["logits"] = 4 * s.seq * s.batch * arch.vocab
    if arch is not None and s.method != "full" and not s.inference:
        notes.append("LoRA: activations of the frozen base are still stored (needed to backprop to the adapters)")

    gpu = {k: int(v) for k, v in gpu.items()}
    return MemoryPlan(model=name, params=P, trainable_params=trainable, strategy=s, gpu=gpu, cpu=cpu,
                      model_states={k: int(v) for k, v in model_states.items()}, arch=arch, notes=notes)

