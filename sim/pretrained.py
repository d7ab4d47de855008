"""The base model a fine-tune starts from: the same architecture pretrained on the language.

A run with `init="base"` loads these weights before its first step (stage one of the usual
pipeline: pretrain, then SFT). Pretraining is deterministic, so its weights are kept per
process and shared by every fine-tune of the same architecture and seed.
"""
from __future__ import annotations

import dataclasses
import json

# plain language modelling, long enough for greedy text to follow the grammar
PRETRAINING = {"data": "markov", "init": "scratch", "steps": 100, "batch_size": 64, "lr": 2e-2,
               "warmup_steps": 10, "schedule": "cosine", "optimizer": "adamw",
               "weight_decay": 0.0, "eval_every": 0, "grad_accum_steps": 1, "grad_clip": 0.0,
               "precision": "fp32", "memory_budget_mib": 0.0}
_weights: dict[str, dict] = {}


def base_weights(config, train) -> dict:
    """The state dict of the base model for `config`'s architecture, vocabulary and seed,
    pretrained with `train` (the loop's own function, passed in: the loop calls this)."""
    from .config import TrainConfig
    base = dataclasses.replace(TrainConfig(), **{
        name: getattr(config, name) for name in ("model", "vocab_size", "seq_len", "d_model",
                                                 "n_layer", "n_head", "seed", "device")},
        **PRETRAINING)
    key = json.dumps(base.to_dict(), sort_keys=True)
    if key not in _weights:
        _weights[key] = {k: v.clone() for k, v in train(base).model.state_dict().items()}
    return _weights[key]
