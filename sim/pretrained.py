"""The team's pretrained checkpoints: a small MLP or transformer language model that already
knows the toy language, the starting point of fine-tuning scenarios (`base_model="pretrained"`).

It is trained once per process and shape, with a fixed recipe and seed, by the training loop
itself (passed in: this module does not import it): every run that starts from it starts from
the same weights, as a downloaded checkpoint would. The global random state is left as it was,
so a run is the same whether the checkpoint was cached or not.
"""
from __future__ import annotations

from typing import Callable

RECIPE = {"model": "mlp", "data": "markov", "optimizer": "adamw", "lr": 3e-2,
          "warmup_steps": 5, "schedule": "cosine", "steps": 80, "batch_size": 32, "seed": 0}
# the transformer's: long enough for its greedy text to follow the grammar
TRANSFORMER_RECIPE = {"model": "transformer", "data": "markov", "optimizer": "adamw", "lr": 2e-2,
                      "warmup_steps": 10, "schedule": "cosine", "steps": 100, "batch_size": 64,
                      "seed": 0}

_cache: dict[tuple, dict] = {}


def pretrained_state(config, train: Callable) -> dict:
    """The checkpoint for `config`'s model shape (copies: a run that trains it changes none of
    the cache), made with `train` (the loop's) the first time it is asked for."""
    import torch
    from .config import TrainConfig, with_overrides
    shape = (config.model, config.vocab_size, config.d_model, config.seq_len, config.n_layer,
             config.n_head)
    if shape not in _cache:
        recipe = with_overrides(TrainConfig(), {
            **(RECIPE if config.model == "mlp" else TRANSFORMER_RECIPE),
            "vocab_size": config.vocab_size, "d_model": config.d_model,
            "seq_len": config.seq_len, "n_layer": config.n_layer, "n_head": config.n_head})
        with torch.random.fork_rng():
            run = train(recipe)
        _cache[shape] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return {name: tensor.clone() for name, tensor in _cache[shape].items()}
