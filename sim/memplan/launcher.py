"""The team's launch script: how a job config becomes the model that actually trains.

A job config says what the team asked for (LoRA r=16, activation checkpointing, ...); the
launcher is the code that reads it, loads the model, wraps it and starts the trainer. The bugs
the planner scenarios inject live here, each a class whose `launch(strategy)` returns the
strategy the job really runs. The config (and everything written from it) keeps saying what
was asked; the memory plan is computed from what ran. A fix that repairs a bug lists its class
in `Fix.repairs`. (The training engine's code bugs are implementations of the team's functions
instead, `sim/implementations.py`: that engine runs real code, this one plans.)
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .accounting import Strategy


class DropsPeftConfig:
    """The shared launcher loads the model from `model` and `precision` only and hands it to
    the trainer as it is: the job's fine-tuning block (method, LoRA rank and targets, the 4-bit
    base of QLoRA) is parsed but never passed to `get_peft_model`, so there are no adapters and
    every parameter trains in bf16 with the configured optimizer. PEFT's
    `print_trainable_parameters()` would say trainable%: 100."""

    @staticmethod
    def launch(strategy: Strategy) -> Strategy:
        return replace(strategy, method="full")


class IgnoresCheckpointingFlag:
    """The shared launcher reads `checkpointing: true` from the job config and never calls
    `model.gradient_checkpointing_enable()` (the flag was wired to the old trainer arguments,
    which the new launcher no longer builds). Every layer keeps its full activations for the
    backward pass."""

    @staticmethod
    def launch(strategy: Strategy) -> Strategy:
        return replace(strategy, checkpointing=False)


def launched(strategy: Strategy, launcher_code: Iterable) -> Strategy:
    """The strategy that runs when the job config `strategy` goes through the launcher with
    these bugs (classes with a static `launch`); no bugs: exactly what was asked."""
    for bug in launcher_code:
        strategy = bug.launch(strategy)
    return strategy
