"""Serving generation requests with a KV cache: the bookkeeping around each cached forward pass.

A server answers requests one after another. For each request it picks the cache the request
starts from; before each cached forward pass it picks the rotary positions of the new tokens;
after a decoding step (one new token per row) it may store keys and values itself. Each of these
has the implementation the team ships and alternatives that have shipped at some point; a run's
config chooses them through its implementation fields (`kv_lifetime`, `kv_positions`,
`kv_store`), which say how the code is written and never appear in a run's config file.
"""
from __future__ import annotations

import torch

from .models import KVCache


# --- which cache a request starts from ------------------------------------------------------

def cache_per_request(server: "Server") -> KVCache:
    return KVCache()


def cache_per_server(server: "Server") -> KVCache:
    if server.cache is None:
        server.cache = KVCache()
    return server.cache


# --- rotary positions of the tokens fed to a cached forward pass ----------------------------

def positions_after_cache(cache: KVCache, count: int) -> torch.Tensor:
    start = cache.length
    return torch.arange(start, start + count)


def positions_in_chunk(cache: KVCache, count: int) -> torch.Tensor:
    return torch.arange(count)


# --- what a decoding step stores after the forward pass -------------------------------------

def stored_by_attention(cache: KVCache) -> None:
    """The attention layers already appended this step's keys and values."""


def store_new_token(cache: KVCache) -> None:
    for layer in range(len(cache.keys)):
        cache.keys[layer] = torch.cat([cache.keys[layer], cache.keys[layer][:, :, -1:]], dim=2)
        cache.values[layer] = torch.cat([cache.values[layer], cache.values[layer][:, :, -1:]],
                                        dim=2)


# the implementation fields of the config, by value (a code probe shows the one that ran)
IMPLEMENTATIONS = {
    "kv_lifetime": {"request": cache_per_request, "server": cache_per_server},
    "kv_positions": {"after_cache": positions_after_cache, "in_chunk": positions_in_chunk},
    "kv_store": {"attention": stored_by_attention, "attention_and_loop": store_new_token},
}


class Server:
    """One model server: the cache it may keep between requests, and its bookkeeping code."""

    def __init__(self, config) -> None:
        self.cache: KVCache | None = None
        self.request_cache = IMPLEMENTATIONS["kv_lifetime"][config.kv_lifetime]
        self.positions = IMPLEMENTATIONS["kv_positions"][config.kv_positions]
        self.after_decode_step = IMPLEMENTATIONS["kv_store"][config.kv_store]

    def start_request(self) -> KVCache:
        return self.request_cache(self)
