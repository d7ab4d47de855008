"""Tiny models with their insides in plain sight: attention → MLP → block → transformer, and an MLP LM.

The attention is written out (scores, scaling, masking, softmax) so scenarios can break any of
those steps. Both models map token ids of shape (batch, time) to logits (batch, time, vocab).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .implementations import chosen, implements


@implements("kv_cache_update", "store_each_step")
def extend_cache(cache, layer, keys, values):
    """Keys and values of every position seen so far at `layer`: the cached ones, then the
    new ones. The cache keeps them for the next step."""
    if layer == len(cache.keys):                        # the prompt: nothing cached yet
        cache.keys.append(keys)
        cache.values.append(values)
    else:
        cache.keys[layer] = torch.cat([cache.keys[layer], keys], dim=2)
        cache.values[layer] = torch.cat([cache.values[layer], values], dim=2)
    return cache.keys[layer], cache.values[layer]


@implements("kv_cache_update", "store_on_prefill")
def cached_keys_values(cache, layer, keys, values):
    """Keys and values of every position seen so far at `layer`: the cached ones, then the
    new ones. The cache keeps them for the next step."""
    if layer == len(cache.keys):                        # the prompt: nothing cached yet
        cache.keys.append(keys)
        cache.values.append(values)
        return keys, values
    return (torch.cat([cache.keys[layer], keys], dim=2),
            torch.cat([cache.values[layer], values], dim=2))


@implements("kv_cache_update", "store_step_twice")
def append_to_cache(cache, layer, keys, values):
    """Keys and values of every position seen so far at `layer`: the cached ones, then the
    new ones. The cache keeps them for the next step."""
    if layer == len(cache.keys):                        # the prompt: nothing cached yet
        cache.keys.append(keys)
        cache.values.append(values)
        return keys, values
    seen_keys = torch.cat([cache.keys[layer], keys], dim=2)
    seen_values = torch.cat([cache.values[layer], values], dim=2)
    cache.keys[layer] = torch.cat([seen_keys, keys], dim=2)
    cache.values[layer] = torch.cat([seen_values, values], dim=2)
    return seen_keys, seen_values


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, one (k, v) pair per layer, and the function
    that extends them by a step's new ones."""
    keys: list = field(default_factory=list)
    values: list = field(default_factory=list)
    extend: object = extend_cache

    @property
    def length(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, mask_value: str = "min") -> None:
        super().__init__()
        self.n_head, self.head_dim = n_head, d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mask_value = mask_value

    def forward(self, x, rope, allowed, cache: KVCache | None = None, layer: int = 0):
        batch, time, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, time, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        q, k = rotate(q, *rope), rotate(k, *rope)          # rotary: position enters q·k
        if cache is not None:                               # decoding: prepend what came before
            k, v = cache.extend(cache, layer, k, v)
        # scores: how much each query position attends to each key position
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        fill = float("-inf") if self.mask_value == "-inf" else torch.finfo(scores.dtype).min
        weights = F.softmax(scores.masked_fill(~allowed, fill), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, time, width)
        return self.proj(out)


def rotary_tables(positions, head_dim: int):
    """cos/sin of the rotary angles for each position: computed once per forward pass.
    `positions` is (time,), shared by every row, or (batch, time), one row each."""
    half = head_dim // 2
    freqs = 10000.0 ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions[..., None].float() * freqs                        # (..., time, half)
    if angles.dim() == 3:
        angles = angles[:, None]                   # (batch, 1, time, half): the same for each head
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    """Rotary position embedding: turn each pair of channels by an angle set by the position."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention_mask(query_positions, key_count: int, key_padding=None):
    """True where a query may attend to a key: not in its future, and not padding."""
    key_positions = torch.arange(key_count, device=query_positions.device)
    allowed = key_positions[None, :] <= query_positions[:, None]            # causal
    if key_padding is not None:                                             # (batch, keys)
        allowed = allowed[None, None] & ~key_padding[:, None, None, :]
    return allowed


class FeedForward(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model)
        self.down = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, mask_value: str) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, mask_value)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model)

    def forward(self, x, rope, allowed, cache=None, layer=0):
        x = x + self.attn(self.ln1(x), rope, allowed, cache, layer)
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """A decoder-only transformer: token embeddings, rotary positions, pre-LN blocks, LM head."""

    def __init__(self, vocab_size: int, seq_len: int, d_model: int, n_layer: int, n_head: int,
                 mask_value: str = "min", checkpointing: bool = False) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, mask_value) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.checkpointing = checkpointing
        self.apply(_init_weights)

    def forward(self, tokens, key_padding=None, cache: KVCache | None = None, positions=None):
        """`positions` are the rotary positions of `tokens`, (time,) or one row each (batch,
        time) (default: their index after what the cache holds); which keys a token may see
        follows its index and `key_padding` (batch, keys: cached and new), never its position."""
        start = cache.length if cache is not None else 0
        index = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        positions = index if positions is None else positions
        rope = rotary_tables(positions, self.blocks[0].attn.head_dim)
        allowed = attention_mask(index, start + tokens.shape[1], key_padding)
        x = self.tok_emb(tokens)
        for layer, block in enumerate(self.blocks):
            if self.checkpointing and self.training and cache is None:
                x = checkpoint(block, x, rope, allowed, use_reentrant=False)
            else:
                x = block(x, rope, allowed, cache, layer)
        return self.head(self.ln_f(x))

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped the way per-layer telemetry reports them."""
        groups = {"embed": list(self.tok_emb.parameters())}
        for index, block in enumerate(self.blocks):
            groups[f"block{index}"] = list(block.parameters())
        groups["head"] = [*self.ln_f.parameters(), *self.head.parameters()]
        return groups


class RewardModel(TinyTransformer):
    """The small transformer with a value head instead of the LM head: (batch, time) values,
    zero at padding positions."""

    def __init__(self, config) -> None:
        super().__init__(config.vocab_size, config.seq_len, config.d_model, config.n_layer,
                         config.n_head, config.attn_mask_value, config.activation_checkpointing)
        self.head = nn.Linear(config.d_model, 1, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """A language model's checkpoint: everything but its LM head (the value head is new)."""
        own_head = {"head.weight": self.head.weight.detach().clone()}
        return super().load_state_dict({**state, **own_head}, strict, assign)

    def forward(self, tokens, key_padding=None, cache=None, positions=None):
        values = super().forward(tokens, key_padding, cache, positions).squeeze(-1)
        return values if key_padding is None else values.masked_fill(key_padding, 0.0)


def transformer_lm(config) -> TinyTransformer:
    """A freshly initialised transformer language model of `config`'s shape."""
    return TinyTransformer(config.vocab_size, config.seq_len, config.d_model, config.n_layer,
                           config.n_head, config.attn_mask_value, config.activation_checkpointing)


class DPOModel(nn.Module):
    """A language model tuned with DPO (`sim/dpo.py`): the policy (the pretrained transformer
    LM, the only parameters the optimizer sees) and its reference, made by the team's code
    (the `dpo_reference` slot) once the checkpoint is loaded. Given a padded batch
    it returns the policy's and the reference's logits stacked, (2, batch, time, vocab); for
    decoding (a cache, or no padding mask) the policy's logits alone."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.policy = transformer_lm(config)
        self._starting_point()

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """A language model's checkpoint goes into the policy; the reference is made from it."""
        loaded = self.policy.load_state_dict(state, strict, assign)
        self._starting_point()
        return loaded

    def _starting_point(self) -> None:
        """The reference, as the team's code makes it from the policy; and, for the grader's
        measurements, the policy as it starts, frozen (neither is a submodule: the optimizer
        and the telemetry see the policy's parameters only)."""
        self.__dict__["reference"] = self._reference()
        start = copy.deepcopy(self.policy).eval()
        self.__dict__["start"] = start.requires_grad_(False)

    def _reference(self) -> nn.Module:
        return chosen(self.config, "dpo_reference")(self.policy)

    def forward(self, tokens, key_padding=None, cache=None, positions=None):
        logits = self.policy(tokens, key_padding, cache, positions)
        if cache is not None or key_padding is None:
            return logits
        with torch.no_grad():
            reference = self.reference(tokens, key_padding)
        return torch.stack([logits, reference])

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.policy.layer_groups()


class RLHFModel(DPOModel):
    """A language model tuned by policy gradient against a reward model (`sim/rlhf.py`): the
    policy and the KL penalty's reference, made by the team's code (the `rlhf_reference` slot);
    returns the two models' logits stacked like `DPOModel`."""

    def _reference(self) -> nn.Module:
        return chosen(self.config, "rlhf_reference")(self.policy, self.config)


@implements("rlhf_reference", "loaded_copy")
def reference_policy(policy, config):
    """The KL penalty's reference: a model of the policy's shape loaded with the weights the
    policy starts from, in eval mode and without gradients."""
    reference = transformer_lm(config)
    reference.load_state_dict(policy.state_dict())
    return reference.eval().requires_grad_(False)


@implements("rlhf_reference", "assigned_weights")
def frozen_reference(policy, config):
    """The KL penalty's reference: a model of the policy's shape loaded with the weights the
    policy starts from, in eval mode and without gradients."""
    reference = transformer_lm(config)
    reference.load_state_dict(policy.state_dict(), assign=True)
    return reference.eval().requires_grad_(False)


@implements("lm_window", "ending_at_token")
def context_windows(x, context: int):
    """For each position, the embeddings of the `context` tokens it predicts from, side by
    side (zeros where the window runs past the sequence)."""
    padded = F.pad(x, (0, 0, context - 1, 0))
    return torch.cat([padded[:, i:i + x.shape[1]] for i in range(context)], dim=-1)


@implements("lm_window", "around_token")
def window_embeddings(x, context: int):
    """For each position, the embeddings of the `context` tokens it predicts from, side by
    side (zeros where the window runs past the sequence)."""
    padded = F.pad(x, (0, 0, context - 2, 1))
    return torch.cat([padded[:, i:i + x.shape[1]] for i in range(context)], dim=-1)


class MlpLM(nn.Module):
    """A fixed-window MLP language model: the last `context` tokens predict the next one."""

    def __init__(self, vocab_size: int, d_model: int, context: int = 3,
                 windows=context_windows) -> None:
        super().__init__()
        self.context, self.windows = context, windows
        self.emb = nn.Embedding(vocab_size, d_model)
        self.hidden = nn.Linear(context * d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, vocab_size)
        self.apply(_init_weights)

    def forward(self, tokens, key_padding=None, cache=None, positions=None):
        x = self.emb(tokens)                                    # (batch, time, d)
        return self.out(F.gelu(self.hidden(self.windows(x, self.context))))

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"embed": list(self.emb.parameters()), "hidden": list(self.hidden.parameters()),
                "head": list(self.out.parameters())}


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def build_model(config) -> nn.Module:
    """A freshly initialised model (the training loop loads a checkpoint into it where the
    config asks for the pretrained one)."""
    if config.model == "reward":
        return RewardModel(config)
    if config.model == "dpo":
        return DPOModel(config)
    if config.model == "rlhf":
        return RLHFModel(config)
    if config.model == "mlp":
        return MlpLM(config.vocab_size, config.d_model, windows=chosen(config, "lm_window"))
    return transformer_lm(config)
