"""Model presets transcribed from the published Hugging Face ``config.json`` files.

Each preset's parameter count is computed from its shape (``arch.py``) and
pinned against the published size in ``tests/test_memplan.py``.
"""
from __future__ import annotations

import difflib

from .arch import Architecture


def _gpt2(name, hidden, layers, heads):
    # openai-community/gpt2*: n_inner=None -> 4*n_embd, gelu, learned positions (1024),
    # LayerNorm with bias, biased Conv1D projections, tied LM head, dropout 0.1 (resid/attn/embd).
    return Architecture(name=name, layers=layers, hidden=hidden, heads=heads, intermediate=4 * hidden,
                        vocab=50257, mlp="plain", positional="learned", max_positions=1024,
                        norm="layernorm", bias=True, tied_embeddings=True, dropout=True,
                        attn_dropout=True, source=f"openai-community/{name} config.json")


def _llama(name, hidden, layers, heads, kv_heads, intermediate, vocab, max_pos, source):
    # RMSNorm (weight only), no biases, SwiGLU MLP, rotary, untied LM head, no dropout.
    return Architecture(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                        intermediate=intermediate, vocab=vocab, max_positions=max_pos, source=source)


PRESETS: dict[str, Architecture] = {a.name: a for a in [
    _gpt2("gpt2", 768, 12, 12),
    _gpt2("gpt2-medium", 1024, 24, 16),
    _gpt2("gpt2-large", 1280, 36, 20),
    _gpt2("gpt2-xl", 1600, 48, 25),
    _llama("llama-65b", 8192, 80, 64, 64, 22016, 32000, 2048, "LLaMA-1 65B (Touvron et al. 2023), the QLoRA paper's 65B"),
    _llama("llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, "meta-llama/Llama-2-7b-hf config.json"),
    _llama("llama-2-13b", 5120, 40, 40, 40, 13824, 32000, 4096, "meta-llama/Llama-2-13b-hf config.json"),
    _llama("llama-2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, "meta-llama/Llama-2-70b-hf config.json"),
    _llama("llama-3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, "meta-llama/Meta-Llama-3-8B config.json"),
    _llama("llama-3-70b", 8192, 80, 64, 8, 28672, 128256, 8192, "meta-llama/Meta-Llama-3-70B config.json"),
    _llama("mistral-7b", 4096, 32, 32, 8, 14336, 32000, 32768, "mistralai/Mistral-7B-v0.1 config.json"),
    # facebook/opt-13b: ReLU MLP (ffn_dim 20480), biases, LayerNorm, learned positions with a
    # +2 offset (2050 rows), tied LM head, dropout 0.1, attention_dropout 0.0.
    Architecture(name="opt-13b", layers=40, hidden=5120, heads=40, intermediate=20480, vocab=50272,
                 mlp="plain", positional="learned", max_positions=2048, position_offset=2,
                 norm="layernorm", bias=True, tied_embeddings=True, dropout=True, attn_dropout=False,
                 source="facebook/opt-13b config.json"),
]}

ALIASES = {
    "gpt2-small": "gpt2", "gpt-2": "gpt2", "gpt-2-small": "gpt2", "gpt-2-medium": "gpt2-medium",
    "gpt-2-large": "gpt2-large", "gpt-2-xl": "gpt2-xl",
    "llama2-7b": "llama-2-7b", "llama2-13b": "llama-2-13b", "llama2-70b": "llama-2-70b",
    "llama-7b": "llama-2-7b",  # LLaMA-1 7B has the same shape as Llama-2-7B
    "llama3-8b": "llama-3-8b", "llama3-70b": "llama-3-70b",
    "llama-3.1-8b": "llama-3-8b", "llama-3.1-70b": "llama-3-70b",
    "mistral-7b-v0.1": "mistral-7b",
    "llama-1-65b": "llama-65b",
}


class UnknownModel(KeyError):
    def __init__(self, name: str, suggestions: list[str]):
        self.name, self.suggestions = name, suggestions
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (known: {', '.join(PRESETS)})")

    def __str__(self):
        return self.args[0]


def _norm(name: str) -> str:
    n = name.strip().lower().replace("_", "-")
    return n.rsplit("/", 1)[-1].removesuffix("-hf")   # accept "meta-llama/Llama-2-7b-hf"


def get_preset(name: str) -> Architecture:
    """Look up a preset by name or alias; raise :class:`UnknownModel` with suggestions."""
    key = _norm(name)
    key = ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    choices = list(PRESETS) + list(ALIASES)
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
    resolved = list(dict.fromkeys(ALIASES.get(c, c) for c in close))
    raise UnknownModel(name, resolved)
