"""The team's pretrained checkpoint: a small MLP language model that already knows the toy
language, the starting point of fine-tuning scenarios (`base_model="pretrained"`).

It is trained once per process and shape, with a fixed recipe and seed, by the training loop
itself (passed in: this module does not import it): every run that starts from it starts from
the same weights, as a downloaded checkpoint would. The global random state is left as it was,
so a run is the same whether the checkpoint was cached or not.
"""
from __future__ import annotations

from typing import Callable

RECIPE = {"model": "mlp", "data": "markov", "optimizer": "adamw", "lr": 3e-2,
          "warmup_steps": 5, "schedule": "cosine", "steps": 80, "batch_size": 32, "seed": 0}

_cache: dict[tuple, dict] = {}


def pretrained_state(config, train: Callable) -> dict:
    """The checkpoint for `config`'s model shape (copies: a run that trains it changes none of
    the cache), made with `train` (the loop's) the first time it is asked for."""
    import torch
    from .config import TrainConfig, with_overrides
    if config.model != "mlp":
        raise ValueError("base_model=pretrained: only the MLP has a pretrained checkpoint")
    shape = (config.vocab_size, config.d_model, config.seq_len)
    if shape not in _cache:
        recipe = with_overrides(TrainConfig(), {**RECIPE, "vocab_size": shape[0],
                                                "d_model": shape[1], "seq_len": shape[2]})
        with torch.random.fork_rng():
            run = train(recipe)
        _cache[shape] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return {name: tensor.clone() for name, tensor in _cache[shape].items()}
