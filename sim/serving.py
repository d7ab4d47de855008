"""Serving generation requests with a KV cache: which cache a request starts from, and the
rotary positions of the tokens fed with it.

A server answers requests one after another. For each request it picks the cache the request
starts from; before each cached forward pass it picks the positions of the new tokens: where
they sit along the padded batch, then, row by row, where they sit in that row's own text (a
request's prompts are left-padded to its longest, and a row's first real token is position 0,
as in training). All three are replaceable functions (`sim/implementations.py`: the
`kv_lifetime`, `kv_positions` and `kv_row_positions` slots); how the cache grows is the model's
`kv_cache_update` slot.
"""
from __future__ import annotations

import torch

from .implementations import chosen, implements
from .models import KVCache


@implements("kv_lifetime", "per_request")
def request_cache(server: "Server") -> KVCache:
    """The KV cache a new request starts from."""
    return KVCache(extend=server.extend)


@implements("kv_lifetime", "per_server")
def server_cache(server: "Server") -> KVCache:
    """The KV cache a new request starts from."""
    if server.cache is None:
        server.cache = KVCache(extend=server.extend)
    return server.cache


@implements("kv_positions", "after_cache")
def new_positions(cache: KVCache, count: int) -> torch.Tensor:
    """Rotary positions of the `count` tokens fed with `cache`."""
    start = cache.length
    return torch.arange(start, start + count)


@implements("kv_positions", "in_chunk")
def token_positions(cache: KVCache, count: int) -> torch.Tensor:
    """Rotary positions of the `count` tokens fed with `cache`."""
    return torch.arange(count)


@implements("kv_row_positions", "whole_mask")
def row_positions(positions: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Each row's rotary positions of the tokens fed at `positions` (counted along the padded
    batch): moved back by the row's left padding, so that its first real token sits at 0.
    `padding` (batch, keys) is True at the padding among the keys this pass attends to."""
    pads = padding.sum(dim=1, keepdim=True)
    return (positions[None, :] - pads).clamp(min=0)


@implements("kv_row_positions", "fed_tokens_mask")
def padded_row_positions(positions: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Each row's rotary positions of the tokens fed at `positions` (counted along the padded
    batch): moved back by the row's left padding, so that its first real token sits at 0.
    `padding` (batch, keys) is True at the padding among the keys this pass attends to."""
    pads = padding[:, -len(positions):].sum(dim=1, keepdim=True)
    return (positions[None, :] - pads).clamp(min=0)


class Server:
    """One model server: the cache it may keep between requests, and its bookkeeping code."""

    def __init__(self, config) -> None:
        self.cache: KVCache | None = None
        self.extend = chosen(config, "kv_cache_update")
        self.request_cache = chosen(config, "kv_lifetime")
        self.positions = chosen(config, "kv_positions")
        self.row_positions = chosen(config, "kv_row_positions")

    def start_request(self) -> KVCache:
        return self.request_cache(self)
