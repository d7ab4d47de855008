"""The team's pretrained checkpoints: a small MLP or transformer language model that already
knows the toy language, the starting point of fine-tuning scenarios (`base_model="pretrained"`).

It is trained with a fixed recipe and seed by the training loop itself (passed in: this module
does not import it): every run that starts from it starts from the same weights, as a
downloaded checkpoint would. The global random state is left as it was, so a run is the same
whether the checkpoint was cached or not.

Like a hub checkpoint, it is made once and kept: in memory for the process, and on disk in the
debugsim home (`cache/pretrained-<shape>-<digest>.pt`), so a later command loads it in
milliseconds instead of spending a second or two pretraining. The digest covers the recipe,
the torch version and debugsim's source: a checkpoint is used only by the
code that made it (any change to the code retrains it once). A file that cannot be read is
trained again and replaced; files are written atomically, so runs in parallel processes at
most train the same checkpoint twice. Loading gives the trained tensors bit for bit (tested).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
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
    kind = "mlp" if config.model == "mlp" else "transformer"   # a reward or DPO model's too
    shape = (kind, config.vocab_size, config.d_model, config.seq_len, config.n_layer,
             config.n_head)
    if shape not in _cache:
        recipe = with_recipe(config)
        path = _file("pretrained", shape, recipe.to_dict())
        state = _load(path)
        if state is None:
            with torch.random.fork_rng():
                run = train(recipe)
            state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            _save(state, path)
        _cache[shape] = state
    return {name: tensor.clone() for name, tensor in _cache[shape].items()}


def with_recipe(config):
    """The pretraining config for `config`'s model shape."""
    from .config import TrainConfig, with_overrides
    return with_overrides(TrainConfig(), {
        **(RECIPE if config.model == "mlp" else TRANSFORMER_RECIPE),
        "vocab_size": config.vocab_size, "d_model": config.d_model,
        "seq_len": config.seq_len, "n_layer": config.n_layer, "n_head": config.n_head})


def kept_state(name: str, shape: tuple, recipe: dict, make: Callable[[], dict]) -> dict:
    """Another checkpoint the team keeps (the RLHF reward model): loaded from the debugsim home
    when a file made by the same recipe and code is there, else made with `make` and saved."""
    path = _file(name, shape, recipe)
    state = _load(path)
    if state is None:
        state = {k: v.detach().clone() for k, v in make().items()}
        _save(state, path)
    return state


def clear_memory() -> None:
    """Forget the checkpoints held in memory (the files on disk stay)."""
    _cache.clear()


def _file(name: str, shape: tuple, recipe: dict) -> Path:
    import torch
    from .home import home
    from .training_code import source_digest
    digest = hashlib.sha256(json.dumps([recipe, torch.__version__, source_digest()],
                                       sort_keys=True).encode())
    tag = "-".join(str(part) for part in shape)
    return home() / "cache" / f"{name}-{tag}-{digest.hexdigest()[:16]}.pt"


def _load(path: Path) -> dict | None:
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:                   # truncated or foreign: made again below
        return None
    return state if isinstance(state, dict) and state else None


def _save(state: dict, path: Path) -> None:
    """Write atomically, and drop this shape's checkpoints made by other code. A home that
    cannot be written to only costs the time to pretrain again next time."""
    import io

    import torch
    from .files import write_bytes_atomic
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        write_bytes_atomic(path, buffer.getvalue())
        for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
