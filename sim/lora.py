"""LoRA written out by hand: a frozen base layer plus a low-rank update B·A, scaled by alpha / r.

The point is to see A and B. `LoRALinear` wraps an `nn.Linear`: its output is the frozen base's
plus `scaling * x·Aᵀ·Bᵀ`, A of shape (r, in) and B of shape (out, r). The conventions are the
ones learners meet at work in PEFT: `r`, `lora_alpha`, target modules named by their attribute,
A initialised like a linear layer and B at zero (so training starts from the base model exactly),
scaling `alpha / r`, and the "trainable params: ... || all params: ... || trainable%: ..." line.

How the adapters are set up is the team's code, with replaceable implementations
(`sim/implementations.py`): the initialisation, the scaling, freezing the base, and handing the
adapters to the optimizer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .implementations import chosen, implements


@implements("lora_init", "a_like_linear")
def init_adapter(lora_A, lora_B):
    """Initialise a fresh adapter: A like a linear layer's weight, B at zero, so that B·A is
    zero and training starts from the base model exactly."""
    nn.init.kaiming_uniform_(lora_A, a=math.sqrt(5))
    nn.init.zeros_(lora_B)


@implements("lora_init", "both_zero")
def reset_adapter(lora_A, lora_B):
    """Initialise a fresh adapter: A like a linear layer's weight, B at zero, so that B·A is
    zero and training starts from the base model exactly."""
    nn.init.zeros_(lora_A)
    nn.init.zeros_(lora_B)


@implements("lora_scaling", "alpha_over_r")
def adapter_scaling(r, alpha):
    """The factor on the adapter's output (PEFT's `scaling`), from the rank and lora_alpha."""
    return alpha / r


@implements("lora_scaling", "r_over_alpha")
def lora_scale(r, alpha):
    """The factor on the adapter's output (PEFT's `scaling`), from the rank and lora_alpha."""
    return r / alpha


class LoRALinear(nn.Module):
    """y = base(x) + scaling · (x Aᵀ) Bᵀ, with the base layer frozen by whoever wraps it."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, config) -> None:
        super().__init__()
        self.base = base
        self.r, self.alpha = r, alpha
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r))
        chosen(config, "lora_init")(self.lora_A, self.lora_B)
        self.scaling = chosen(config, "lora_scaling")(r, alpha)

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


def target_names(config) -> list[str]:
    return [name.strip() for name in config.lora_targets.split(",") if name.strip()]


def inject_adapters(model: nn.Module, config) -> None:
    """Replace each target linear layer (by attribute name) with a LoRA-wrapped one."""
    for name in target_names(config):
        layer = getattr(model, name, None)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"lora_targets: '{name}' is not a linear layer of the model")
        setattr(model, name, LoRALinear(layer, config.lora_r, config.lora_alpha, config))


@implements("lora_freeze", "assign")
def mark_only_lora_as_trainable(model):
    """Freeze the base model: only the adapters' A and B matrices keep requires_grad."""
    for name, param in model.named_parameters():
        if "lora_" not in name:
            param.requires_grad = False


@implements("lora_freeze", "compare")
def freeze_base_model(model):
    """Freeze the base model: only the adapters' A and B matrices keep requires_grad."""
    for name, param in model.named_parameters():
        if "lora_" not in name:
            param.requires_grad == False      # noqa: E712


@implements("lora_setup", "wrap_then_collect")
def add_adapters(model, config):
    """Turn the base model into a LoRA model; returns the parameters the optimizer trains."""
    inject_adapters(model, config)
    chosen(config, "lora_freeze")(model)
    return [param for param in model.parameters() if param.requires_grad]


@implements("lora_setup", "collect_then_wrap")
def get_peft_model(model, config):
    """Turn the base model into a LoRA model; returns the parameters the optimizer trains."""
    trainable = [param for param in model.parameters() if param.requires_grad]
    inject_adapters(model, config)
    chosen(config, "lora_freeze")(model)
    return trainable


def trainable_report(model) -> tuple[int, int, str]:
    """(trainable, all, the PEFT-style line) for a model."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total, (f"trainable params: {trainable:,} || all params: {total:,} || "
                              f"trainable%: {100 * trainable / max(total, 1):.4f}")
