"""The team's pretrained checkpoint: a small MLP language model that already knows the toy
language, the starting point of fine-tuning scenarios (`base_model="pretrained"`).

It is trained here, once per process and shape, with a fixed recipe and seed: every run that
starts from it starts from the same weights, as a downloaded checkpoint would. The global random
state is left as it was, so a run is the same whether the checkpoint was cached or not.
"""
from __future__ import annotations

from functools import lru_cache

RECIPE = {"model": "mlp", "data": "markov", "optimizer": "adamw", "lr": 3e-2,
          "warmup_steps": 5, "schedule": "cosine", "steps": 80, "batch_size": 32, "seed": 0}


@lru_cache(maxsize=4)
def _state(vocab_size: int, d_model: int, seq_len: int) -> dict:
    import torch
    from .config import TrainConfig, with_overrides
    from .loop import train
    config = with_overrides(TrainConfig(), {**RECIPE, "vocab_size": vocab_size,
                                            "d_model": d_model, "seq_len": seq_len})
    with torch.random.fork_rng():
        run = train(config)
    return {name: tensor.detach().clone() for name, tensor in run.model.state_dict().items()}


def pretrained_state(vocab_size: int, d_model: int, seq_len: int) -> dict:
    """The checkpoint's state dict (copies: a run that trains it changes none of the cache)."""
    return {name: tensor.clone() for name, tensor in _state(vocab_size, d_model, seq_len).items()}
