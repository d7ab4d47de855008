"""The team's code as replaceable functions: a code bug is another way to write one of them.

A *slot* is a function of the training or decoding code that a team could write in more than
one plausible way: how the KV cache grows, how labels are masked, how the loss is averaged, ...
Each slot is a `TrainConfig` field named in `config.IMPLEMENTATIONS`, with the names of its
implementations (the usual one first). The field says which one runs; it is an implementation
field, so config files never show it (`config.IMPLEMENTATION_FIELDS`). A scenario injects a code
bug by setting the field (`Fault(config={"kv_cache_update": "store_on_prefill"})`) and a fix
repairs it by setting it back; a learner sees the code, never the field.

Each implementation is an ordinary function in the module it belongs to, registered with

    @implements("kv_cache_update", "store_each_step")
    def extend_cache(cache, layer, keys, values): ...

and the code that calls it asks for the one the run uses:

    extend = chosen(config, "kv_cache_update")

`source(config, slot)` is what the `code` probe prints: the source of the function that ran,
without the registering decorator, so nothing in it names the implementation. The other
implementations of a slot are written in the same style with the same docstring, so a bug has
to be read, not spotted by its shape. This module does not import torch; `chosen` and `source`
import the module that holds a slot's implementations the first time they are asked for it.
"""
from __future__ import annotations

import importlib
import inspect
import textwrap
from typing import Any, Callable

from .config import IMPLEMENTATIONS

# where each slot's implementations live (imported on first use), and what the code probe calls it
HOMES: dict[str, tuple[str, str]] = {
    "token_choice": ("decoding", "decoding: how the next token is picked from the scores"),
    "kv_cache_update": ("models", "attention: how the KV cache grows while decoding"),
    "sft_template": ("data", "data: how a prompt/response pair becomes token ids"),
    "sft_labels": ("data", "data: which tokens of an example the loss sees"),
    "label_shift": ("data", "data: how a batch's targets line up with its inputs"),
    "lora_init": ("lora", "LoRA: how a fresh adapter's A and B start"),
    "lora_scaling": ("lora", "LoRA: the factor on the adapter's output"),
    "lora_freeze": ("lora", "LoRA: freezing the base model"),
    "lora_setup": ("lora", "LoRA: adapters in, parameters handed to the optimizer"),
    "grad_reset": ("loop", "training loop: clearing the gradients after the step"),
    "batch_split": ("data", "data: how many sequences this process loads per batch"),
    "lm_window": ("models", "model: the tokens each position of the MLP LM predicts from"),
    "heldout_split": ("data", "data: which sequences the held-out loss is measured on"),
    "padding_labels": ("data", "data: how the collator keeps padding out of the loss"),
    "kv_positions": ("serving", "serving: the rotary positions of the tokens fed with a cache"),
    "kv_lifetime": ("serving", "serving: the KV cache a request starts from"),
    "kv_row_positions": ("serving", "serving: the rotary positions of a left-padded row"),
    "chat_template": ("chat", "serving: how a chat prompt becomes token ids"),
    "stop_check": ("chat", "serving: where an answer ends"),
    "lr_update": ("loop", "training loop: the learning rate set on the optimizer each step"),
    "loss_mean": ("loop", "training loop: a micro-batch's loss from its summed token loss"),
    "confidence_log": ("loop", "training loop: the confidence metric logged per micro-batch"),
    "eval_autograd": ("loop", "training loop: the held-out evaluation"),
    "step_budget": ("loop", "training loop: when training ends"),
    "pair_order": ("preferences", "data: how the collator lays out a preference pair"),
    "reward_position": ("preferences", "reward model: where a sequence's reward is read"),
    "dpo_reference": ("dpo", "DPO: how the reference model is made from the policy"),
    "dpo_scale": ("dpo", "DPO: the logit of each pair, from the log-ratios and beta"),
    "rlhf_reference": ("models", "RLHF: how the KL penalty's reference model is made"),
    "rlhf_penalty": ("rlhf", "RLHF: each rollout's reward, the KL penalty subtracted"),
}

_registered: dict[str, dict[str, Callable]] = {}


def implements(slot: str, name: str) -> Callable[[Callable], Callable]:
    """Register the decorated function as implementation `name` of `slot` (both declared in
    `config.IMPLEMENTATIONS`); the function itself is returned unchanged."""
    if slot not in IMPLEMENTATIONS or name not in IMPLEMENTATIONS[slot]:
        raise ValueError(f"{slot}={name} is not declared in config.IMPLEMENTATIONS")

    def register(function: Callable) -> Callable:
        _registered.setdefault(slot, {})[name] = function
        return function
    return register


def implementations(slot: str) -> dict[str, Callable]:
    """Every implementation of `slot`, by name, in the declared order (the usual one first)."""
    if slot not in IMPLEMENTATIONS:
        raise LookupError(f"unknown code slot '{slot}'")
    importlib.import_module(f"{__package__}.{HOMES[slot][0]}")
    found = _registered.get(slot, {})
    missing = [n for n in IMPLEMENTATIONS[slot] if n not in found]
    if missing:
        raise LookupError(f"{slot}: no function registered for {', '.join(missing)}")
    return {name: found[name] for name in IMPLEMENTATIONS[slot]}


def chosen(config: Any, slot: str) -> Callable:
    """The implementation of `slot` that a run with `config` uses."""
    return implementations(slot)[getattr(config, slot)]


def usual(slot: str) -> str:
    """The name of the implementation a healthy run uses."""
    return IMPLEMENTATIONS[slot][0]


def source(config: Any, slot: str) -> str:
    """The source of the function `config` runs for `slot`, as a reader of the code base sees
    it (decorators left out: they only register it)."""
    return source_of(chosen(config, slot))


def source_of(function: Callable) -> str:
    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    while lines and lines[0].lstrip().startswith("@"):
        lines.pop(0)
    return "\n".join(lines)


def where(slot: str) -> str:
    """`sim/<module>.py`: the file that holds the slot's implementations."""
    return f"sim/{HOMES[slot][0].replace('.', '/')}.py"


def title(slot: str) -> str:
    return HOMES[slot][1]
