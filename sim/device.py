"""A simulated accelerator: a real allocation tracker over real tensors, with a capacity.

Every tensor storage an operator creates while the device is active is counted against the
budget until Python frees it (a weakref finalizer on the storage), attributed to the phase of
the loop that created it: parameters, gradients, optimizer state, activations (forward), or
inputs. Exceeding the budget raises `SimulatedOutOfMemory`, worded like CUDA's error.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .without_dynamo import plain_dispatch

MiB = 2 ** 20
CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "inputs")


class SimulatedOutOfMemory(RuntimeError):
    """Raised like `torch.OutOfMemoryError` when the simulated device is over budget."""

    def __init__(self, requested: int, capacity: int, in_use: int, phase: str) -> None:
        self.requested, self.capacity, self.in_use, self.phase = requested, capacity, in_use, phase
        free = max(capacity - (in_use - requested), 0)
        super().__init__(
            f"CUDA out of memory (simulated). Tried to allocate {requested / MiB:.2f} MiB "
            f"during {phase}. Device has a total capacity of {capacity / MiB:.2f} MiB of which "
            f"{free / MiB:.2f} MiB is free; {(in_use - requested) / MiB:.2f} MiB is in use.")


@plain_dispatch
class SimulatedDevice(TorchDispatchMode):
    def __init__(self, capacity_bytes: int = 0, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled              # disabled: a no-op context, nothing is counted
        self.capacity = int(capacity_bytes)
        self.phase = "inputs"
        self.paused = False
        self._live: dict[int, tuple[int, str]] = {}
        self.by_category = dict.fromkeys(CATEGORIES, 0)
        self.in_use = 0
        self.peak = 0                       # since construction
        self.step_peak = 0                  # since the last `reset_step_peak`
        self.peak_breakdown = dict(self.by_category)

    # --- accounting -------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str | None = None) -> None:
        """Count a tensor's storage (once, however many views share it)."""
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        nbytes = storage.nbytes()
        category = category or self.phase
        self._live[key] = (nbytes, category)
        weakref.finalize(storage, self._release, key)
        self.by_category[category] += nbytes
        self.in_use += nbytes
        if self.in_use > self.step_peak:
            self.step_peak = self.in_use
            if self.in_use > self.peak:
                self.peak = self.in_use
                self.peak_breakdown = dict(self.by_category)
        if self.capacity and self.in_use > self.capacity:
            raise SimulatedOutOfMemory(nbytes, self.capacity, self.in_use, category)

    def _release(self, key: int) -> None:
        nbytes, category = self._live.pop(key)
        self.by_category[category] -= nbytes
        self.in_use -= nbytes

    def track_module(self, module: torch.nn.Module) -> None:
        if not self.enabled:
            return
        for parameter in module.parameters():
            self.track(parameter, "parameters")

    def reset_step_peak(self) -> None:
        self.step_peak = self.in_use

    @contextlib.contextmanager
    def phase_of(self, phase: str):
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous

    @contextlib.contextmanager
    def untracked(self):
        """For instrumentation: what the learner's program would not allocate."""
        previous, self.paused = self.paused, True
        try:
            yield
        finally:
            self.paused = previous

    def __enter__(self):
        return super().__enter__() if self.enabled else self

    def __exit__(self, *exc):
        return super().__exit__(*exc) if self.enabled else None

    # --- the dispatch hook ------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.paused:
            for leaf in tree_leaves(out):
                if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta":
                    self.track(leaf)
        return out
