"""A simulated accelerator: a real allocation tracker over real tensors, with a capacity.

Every tensor storage an operator creates while the device is active is counted against the
budget until Python frees it (a weak reference to the storage, with a callback), attributed to
the phase of the loop that created it: parameters, gradients, optimizer state, activations
(forward), or inputs. Exceeding the budget raises `SimulatedOutOfMemory`: a
`torch.OutOfMemoryError` worded as PyTorch's caching allocator words it.

`record_memory_history` asks the next device made to record its allocation history (for a
snapshot in the format of `torch.cuda.memory._dump_snapshot`, see `memory_snapshot.py`); a
device that is not asked runs exactly the code below, with nothing added to the hook.

Cost: while the device is active every operator passes through `__torch_dispatch__`, a round
trip from C++ to Python that costs more than the tiny operators themselves; on the oom model a
hook that only calls the operator already makes a step about 1.7x slower (benchmarks/run.py,
"pass-through dispatch"). So the hook does as little as it can on top of that:

* the counting rule is unchanged: each tensor an operator returns is looked up by its storage,
  and a storage not seen before is counted once. Views and in-place results share a storage
  that is almost always counted already, so for them the lookup is the whole cost; it cannot be
  skipped, because an alias is how some storages come to be counted at all: a view of a
  tensor made while untracked (the evaluation batch's targets, flattened in the loss) and
  `aten.lift_fresh` of a `torch.tensor(...)` constant (Adam's step counters);
* results are checked by type, not flattened with pytree, and non-tensor results (`.item()`)
  fall straight through; a per-operator cache (of the schema, say) cost more than it saved;
* a freed storage is uncounted by a slotted weak reference's callback, not `weakref.finalize`;
* `untracked()` takes the device off the dispatch stack for the block instead of only pausing
  it, so the data pipeline and the telemetry run without the hook at all;
* `sim.without_dynamo.plain_dispatch` removes the dynamo-disabling wrapper torch puts around
  every dispatch-mode hook.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils import _python_dispatch
from torch.utils._python_dispatch import TorchDispatchMode

from .without_dynamo import plain_dispatch

MiB = 2 ** 20
CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "inputs")

_Tensor = torch.Tensor
_top_mode = getattr(_python_dispatch, "_get_current_dispatch_mode", None)


# torch.OutOfMemoryError since 2.5; torch.cuda.OutOfMemoryError (the same class) before
OutOfMemoryError = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


def format_size(nbytes: int) -> str:
    """Sizes as PyTorch's caching allocator prints them (its `format_size`)."""
    if nbytes <= 1024:
        return f"{int(nbytes)} bytes"
    if nbytes <= MiB:
        return f"{nbytes / 1024:.2f} KiB"
    if nbytes <= 2 ** 30:
        return f"{nbytes / MiB:.2f} MiB"
    return f"{nbytes / 2 ** 30:.2f} GiB"


class SimulatedOutOfMemory(OutOfMemoryError):
    """The simulated device is over budget: a real `torch.OutOfMemoryError` (so
    `except torch.OutOfMemoryError` catches it), worded like the caching allocator's message,
    with "(simulated device)" after the device's name. The tracker counts exact storage bytes
    and caches nothing, so nothing is ever reserved but unallocated."""

    def __init__(self, requested: int, capacity: int, in_use: int, phase: str) -> None:
        self.requested, self.capacity, self.in_use, self.phase = requested, capacity, in_use, phase
        allocated = in_use - requested
        free = max(capacity - allocated, 0)
        super().__init__(
            f"CUDA out of memory. Tried to allocate {format_size(requested)}. GPU 0 (simulated "
            f"device) has a total capacity of {format_size(capacity)} of which "
            f"{format_size(free)} is free. Including non-PyTorch memory, this process has "
            f"{format_size(allocated)} memory in use. Of the allocated memory "
            f"{format_size(allocated)} is allocated by PyTorch, and 0 bytes is reserved by "
            f"PyTorch but unallocated. If reserved but unallocated memory is large try setting "
            f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
            f"documentation for Memory Management  "
            f"(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")

    def __reduce__(self):                       # picklable (worker processes, caches)
        return type(self), (self.requested, self.capacity, self.in_use, self.phase)


_history_request = None     # what `record_memory_history` asks of the next device made


@contextlib.contextmanager
def record_memory_history(history):
    """The first device made inside the block records into `history` (an object with
    `attach(device) -> bool` and `stop()`), as `torch.cuda.memory._record_memory_history()`
    before a run would."""
    global _history_request
    previous, _history_request = _history_request, history
    try:
        yield history
    finally:
        _history_request = previous


class _Counted(weakref.ref):
    """One counted storage: a weak reference whose callback uncounts it when it is freed."""
    __slots__ = ("key", "nbytes", "category")


@plain_dispatch
class SimulatedDevice(TorchDispatchMode):
    def __init__(self, capacity_bytes: int = 0, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled              # disabled: a no-op context, nothing is counted
        self.capacity = int(capacity_bytes)
        self.phase = "inputs"
        self.phase_named = False            # inside `phase_of` (else `phase` is the default)
        self.paused = False
        self._live: dict[int, _Counted] = {}
        self.by_category = dict.fromkeys(CATEGORIES, 0)
        self.in_use = 0
        self.peak = 0                       # since construction
        self.step_peak = 0                  # since the last `reset_step_peak`
        self.peak_breakdown = dict(self.by_category)
        self._active = 0                    # how deep `with device:` is entered
        self._on_free = self._release       # one bound method for every weak reference
        self.history = None
        if enabled and _history_request is not None and _history_request.attach(self):
            self.history = _history_request     # it wraps `_count`, `_on_free`, `reset_step_peak`

    # --- accounting -------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str | None = None) -> None:
        """Count a tensor's storage (once, however many views share it)."""
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        self._count(storage, key, category or self.phase)

    def _count(self, storage, key: int, category: str) -> None:
        nbytes = storage.nbytes()
        ref = _Counted(storage, self._on_free)
        ref.key, ref.nbytes, ref.category = key, nbytes, category
        self._live[key] = ref
        self.by_category[category] += nbytes
        self.in_use += nbytes
        if self.in_use > self.step_peak:
            self.step_peak = self.in_use
            if self.in_use > self.peak:
                self.peak = self.in_use
                self.peak_breakdown = dict(self.by_category)
        if self.capacity and self.in_use > self.capacity:
            raise SimulatedOutOfMemory(nbytes, self.capacity, self.in_use, category)

    def _release(self, ref: _Counted) -> None:
        del self._live[ref.key]
        self.by_category[ref.category] -= ref.nbytes
        self.in_use -= ref.nbytes

    def track_module(self, module: torch.nn.Module) -> None:
        if not self.enabled:
            return
        for parameter in module.parameters():
            self.track(parameter, "parameters")

    def reset_step_peak(self) -> None:
        self.step_peak = self.in_use

    @contextlib.contextmanager
    def phase_of(self, phase: str):
        previous, named = self.phase, self.phase_named
        self.phase, self.phase_named = phase, True
        try:
            yield
        finally:
            self.phase, self.phase_named = previous, named

    @contextlib.contextmanager
    def untracked(self):
        """For instrumentation: what the learner's program would not allocate.

        While the device is the innermost active mode, it leaves the dispatch stack for the
        block (operators then skip the Python hook altogether); otherwise it only pauses."""
        previous, self.paused = self.paused, True
        step_aside = (self._active and not previous and _top_mode is not None
                      and _top_mode() is self)
        if step_aside:
            TorchDispatchMode.__exit__(self, None, None, None)
        try:
            yield
        finally:
            if step_aside:
                TorchDispatchMode.__enter__(self)
            self.paused = previous

    def __enter__(self):
        if not self.enabled:
            return self
        result = super().__enter__()
        self._active += 1
        return result

    def __exit__(self, *exc):
        if not self.enabled:
            return None
        self._active -= 1
        if not self._active and self.history is not None:
            self.history.stop()             # the state at the end (or at the out-of-memory)
        return super().__exit__(*exc)

    # --- the dispatch hook ------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        if type(out) is _Tensor or isinstance(out, _Tensor):
            if not out.is_meta:
                storage = out.untyped_storage()
                key = id(storage)
                if key not in self._live:
                    self._count(storage, key, self.phase)
        elif isinstance(out, (tuple, list)):
            self._track_all(out)
        return out

    def _track_all(self, outputs) -> None:
        for leaf in outputs:
            if isinstance(leaf, _Tensor):
                if not leaf.is_meta:
                    storage = leaf.untyped_storage()
                    key = id(storage)
                    if key not in self._live:
                        self._count(storage, key, self.phase)
            elif isinstance(leaf, (tuple, list)):
                self._track_all(leaf)
