"""Decoder-only transformer architecture: exact parameter counts + a meta-device mirror.

The analytic count (:meth:`Architecture.param_breakdown`) is confirmed by
:func:`meta_param_count`, which builds an ``nn.Module`` mirror of the
architecture on PyTorch's ``meta`` device (shapes only, no storage) and counts
its real parameter tensors.  torch is imported only inside that function.

Modelled layer (pre-norm, as in GPT-2 / OPT / Llama / Mistral)::

    x -> norm -> q,k,v (k,v have kv_heads*head_dim outputs: grouped-query attention)
      -> attention -> o -> +residual
      -> norm -> MLP -> +residual
    gated MLP (SwiGLU, Llama):  down(silu(gate(x)) * up(x))   3 matrices
    plain MLP (GELU/ReLU, GPT-2/OPT): fc2(act(fc1(x)))        2 matrices

Where a real checkpoint differs from the parameter count, it is because of
*buffers*, not parameters: rotary models carry an ``inv_freq`` buffer
(head_dim/2 floats) and Hugging Face's GPT-2 registers a 1024x1024 causal-mask
buffer per layer.  Tied embeddings (GPT-2, OPT) share one tensor between the
input embedding and the LM head; it is counted once (``parameters()`` de-duplicates it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

MLP_KINDS = ("gated", "plain")
POSITIONAL_KINDS = ("rotary", "learned")
NORM_KINDS = ("rmsnorm", "layernorm")
ATTN_MATRICES = ("q", "k", "v", "o")

# LoRA target names -> canonical per-layer matrix name
TARGET_ALIASES = {
    "q": "q", "q_proj": "q", "query": "q",
    "k": "k", "k_proj": "k", "key": "k",
    "v": "v", "v_proj": "v", "value": "v",
    "o": "o", "o_proj": "o", "out_proj": "o", "dense": "o",
    "gate": "gate", "gate_proj": "gate", "w1": "gate",
    "up": "up", "up_proj": "up", "fc1": "up", "w3": "up",
    "down": "down", "down_proj": "down", "fc2": "down", "w2": "down",
}


@dataclass(frozen=True)
class Architecture:
    """Shape of a decoder-only transformer (what a Hugging Face config.json holds)."""

    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    kv_heads: int | None = None          # None -> heads (multi-head attention)
    head_dim: int | None = None          # None -> hidden // heads
    mlp: str = "gated"                   # gated (SwiGLU) | plain
    positional: str = "rotary"           # rotary | learned
    max_positions: int = 4096            # context length
    position_offset: int = 0             # extra rows in a learned table (OPT: 2)
    norm: str = "rmsnorm"                # rmsnorm (weight) | layernorm (weight+bias)
    bias: bool = False                   # biases on attention / MLP linears
    tied_embeddings: bool = False        # LM head shares the input embedding
    dropout: bool = False                # residual/embedding dropout active in training
    attn_dropout: bool = False           # dropout on attention probabilities
    source: str = ""                     # where the numbers come from

    def __post_init__(self):
        for f in ("layers", "hidden", "heads", "intermediate", "vocab"):
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{f} must be a positive integer, got {v!r}")
        if self.kv_heads is not None and (self.kv_heads <= 0 or self.heads % self.kv_heads):
            raise ValueError(f"kv_heads ({self.kv_heads}) must be positive and divide heads ({self.heads})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(f"positional must be one of {POSITIONAL_KINDS}, got {self.positional!r}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        if self.max_positions <= 0:
            raise ValueError("max_positions must be positive")

    # ---- derived shapes -------------------------------------------------
    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.d_head

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.d_head

    def with_name(self, name: str) -> "Architecture":
        return replace(self, name=name)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """Per-layer linear matrices as ``name -> (d_in, d_out)``."""
        h, i = self.hidden, self.intermediate
        shapes = {"q": (h, self.q_dim), "k": (h, self.kv_dim), "v": (h, self.kv_dim),
                  "o": (self.q_dim, h)}
        if self.mlp == "gated":
            shapes.update(gate=(h, i), up=(h, i), down=(i, h))
        else:
            shapes.update(up=(h, i), down=(i, h))
        return shapes

    # ---- parameter counting ----------------------------------------------
    def layer_params(self) -> dict[str, int]:
        shapes = self.linear_shapes()
        attn = sum(a * b + (b if self.bias else 0) for k, (a, b) in shapes.items() if k in ATTN_MATRICES)
        mlp = sum(a * b + (b if self.bias else 0) for k, (a, b) in shapes.items() if k not in ATTN_MATRICES)
        per_norm = self.hidden * (2 if self.norm == "layernorm" else 1)
        return {"attention": attn, "mlp": mlp, "norms": 2 * per_norm}

    def param_breakdown(self) -> dict[str, int]:
        """Exact parameter count by component (unique tensors; tied head counted once)."""
        lp = self.layer_params()
        emb = self.vocab * self.hidden
        return {
            "embedding": emb,
            "positional": (self.max_positions + self.position_offset) * self.hidden
            if self.positional == "learned" else 0,
            "attention": lp["attention"] * self.layers,
            "mlp": lp["mlp"] * self.layers,
            "norms": lp["norms"] * self.layers + self.hidden * (2 if self.norm == "layernorm" else 1),
            "lm_head": 0 if self.tied_embeddings else emb,
        }

    @property
    def num_params(self) -> int:
        return sum(self.param_breakdown().values())

    @property
    def linear_params(self) -> int:
        """Weights of the transformer-block linears (what QLoRA quantises to 4 bit)."""
        return sum(a * b for a, b in self.linear_shapes().values()) * self.layers

    @property
    def largest_unit_params(self) -> int:
        """Largest FSDP/ZeRO-3 wrapping unit: one block or the embedding table."""
        return max(sum(self.layer_params().values()), self.vocab * self.hidden)

    def describe(self) -> str:
        kv = f", kv-heads {self.n_kv_heads} (GQA)" if self.n_kv_heads != self.heads else ""
        return (f"{self.layers} layers, hidden {self.hidden}, {self.heads} heads{kv}, head_dim {self.d_head}, "
                f"intermediate {self.intermediate} ({self.mlp} MLP), vocab {self.vocab}, "
                f"{self.positional} positions, {self.norm}"
                + (", tied embeddings" if self.tied_embeddings else ""))

    def count_notes(self) -> list[str]:
        """Why a checkpoint's tensor count may differ from the parameter count."""
        notes = []
        if self.tied_embeddings:
            notes.append(f"LM head is tied to the input embedding: counted once "
                         f"(counting it twice would add {self.vocab * self.hidden:,})")
        if self.positional == "rotary":
            notes.append(f"rotary inv_freq is a buffer ({self.d_head // 2} floats), not a parameter")
        if self.position_offset:
            notes.append(f"learned position table has {self.max_positions}+{self.position_offset} rows "
                         f"(OPT offsets positions by {self.position_offset})")
        if self.name.startswith("gpt2"):
            notes.append("Hugging Face GPT-2 also stores a 1024x1024 causal-mask buffer per layer (buffer, not a parameter)")
        return notes


def meta_param_count(arch: Architecture) -> dict[str, int]:
    """Instantiate an ``nn.Module`` mirror of ``arch`` on the meta device and count tensors.

    Returns ``{"parameters": unique parameter elements, "parameters_with_duplicates": ...,
    "buffers": buffer elements}``.  No memory is allocated.
    """
    model = build_meta_model(arch)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_with_duplicates": sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def build_meta_model(arch: Architecture):
    """Return the architecture as a real ``torch.nn.Module`` whose tensors live on ``meta``."""
    import torch
    from torch import nn

    def norm():
        if arch.norm == "rmsnorm":
            return nn.RMSNorm(arch.hidden)
        return nn.LayerNorm(arch.hidden, bias=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = norm(), norm()
            for name, (d_in, d_out) in arch.linear_shapes().items():
                setattr(self, name, nn.Linear(d_in, d_out, bias=arch.bias))

    def embedding(rows: int):
        # _weight skips nn.init.normal_, whose first call on meta costs ~2 s of lazy setup
        return nn.Embedding(rows, arch.hidden, _weight=torch.empty(rows, arch.hidden))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = embedding(arch.vocab)
            if arch.positional == "learned":
                self.pos = embedding(arch.max_positions + arch.position_offset)
            else:
                self.register_buffer("inv_freq", torch.empty(arch.d_head // 2), persistent=False)
            self.blocks = nn.ModuleList(Block() for _ in range(arch.layers))
            self.final_norm = norm()
            self.lm_head = nn.Linear(arch.hidden, arch.vocab, bias=False)
            if arch.tied_embeddings:
                self.lm_head.weight = self.embed.weight

    with torch.device("meta"):
        return Decoder()
