"""The simulated device's allocation history as a snapshot for PyTorch's memory visualiser.

`MemoryHistory` records what a `SimulatedDevice` allocates and frees (the device asks it to,
see `device.record_memory_history`), placing each storage in one simulated segment the way a
caching allocator would (sizes rounded up to 512 bytes, first fit, freed blocks reused). At the
end of the run (or at the out-of-memory) it holds the snapshot `torch.cuda.memory._snapshot()`
returns, and `write` pickles it like `torch.cuda.memory._dump_snapshot` (protocol 4: the
viewer's own unpickler reads protocols 2-4):

    segments        one segment of the simulated device: its blocks, active and inactive
    device_traces   [[alloc / free_requested / free_completed / oom events]], oldest first
    debugsim        what is simulated, and what was summarised or dropped to cap the size

Every event and block carries the training code's frames (innermost first), and alloc events
a category: parameter, gradient, optimizer_state, activation, input, or unknown for a storage
made outside any labelled stage of the loop (the step's loss average, say). Open the file at
https://pytorch.org/memory_viz, or `python -m torch.cuda._memory_viz stats|trace FILE`.

Size: after `summarise_after` events, a block allocated and freed within one step is left out
of the trace (so transients stop filling it and what outlives its step, such as a leak, stays);
past `max_entries` events the oldest are dropped, as torch's own ring buffer drops them. The
`debugsim` entry says how many of each.
"""
from __future__ import annotations

import bisect
import pickle
import sys
from pathlib import Path

from .training_code import relative_name

ROUND = 512                        # the caching allocator's smallest block
BASE_ADDRESS = 0x7F00_0000_0000    # where the simulated segment starts (any address would do)
SUMMARISE_AFTER = 20_000
MAX_ENTRIES = 60_000
CATEGORY_NAMES = {"parameters": "parameter", "gradients": "gradient",
                  "optimizer_state": "optimizer_state", "activations": "activation",
                  "inputs": "input"}


class _Segment:
    """First-fit placement in one address range that only grows (a never-released pool)."""

    def __init__(self) -> None:
        self.top = 0                                    # end of the highest block ever placed
        self.free: list[tuple[int, int]] = []           # (offset, size) below `top`, sorted

    def place(self, size: int) -> int:
        for i, (offset, room) in enumerate(self.free):
            if room >= size:
                if room == size:
                    del self.free[i]
                else:
                    self.free[i] = (offset + size, room - size)
                return offset
        offset, self.top = self.top, self.top + size
        return offset

    def release(self, offset: int, size: int) -> None:
        i = bisect.bisect_left(self.free, (offset, 0))
        if i < len(self.free) and self.free[i][0] == offset + size:        # merge with next
            size += self.free.pop(i)[1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == offset:  # merge with previous
            offset, size = self.free[i - 1][0], self.free[i - 1][1] + size
            del self.free[i - 1]
            i -= 1
        if offset + size == self.top:
            self.top = offset
        else:
            self.free.insert(i, (offset, size))


class MemoryHistory:
    """Records one device's allocations (attach it with `device.record_memory_history`)."""

    def __init__(self, summarise_after: int = SUMMARISE_AFTER,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.summarise_after, self.max_entries = summarise_after, max_entries
        self.trace: list[dict] = []
        self.pending: list[tuple[int, dict]] = []       # this step's events, once summarising
        self.blocks: dict[int, tuple[int, int, int, list, int]] = {}   # storage id -> block
        self.segment = _Segment()
        self.step = 0
        self.events = 0                                 # recorded, before any left out
        self.summarised = self.dropped = 0
        self.capacity = 0
        self.high_water = 0
        self.snapshot: dict | None = None
        self.attached = False
        self._next_block = 0
        self._frames: dict = {}
        self._stacks: dict = {}
        self._code_names: dict = {}

    # --- on the device --------------------------------------------------------------------
    def attach(self, device) -> bool:
        """Wrap the device's counting, freeing and step start (instance attributes: a device
        that records nothing keeps its class's methods untouched). One device per history."""
        if self.attached:
            return False
        self.attached = True
        count, release, reset = device._count, device._on_free, device.reset_step_peak
        self.capacity = device.capacity

        def counting(storage, key, category):
            nbytes = storage.nbytes()
            if device.capacity and device.in_use + nbytes > device.capacity:
                self._oom(nbytes, device)
            count(storage, key, category)
            if nbytes:
                unknown = not device.phase_named and category == device.phase
                self._alloc(key, nbytes, "unknown" if unknown else CATEGORY_NAMES[category])

        def releasing(ref):
            release(ref)
            self._free(ref.key)

        def step_start():
            reset()
            self._end_step()

        device._count, device._on_free, device.reset_step_peak = counting, releasing, step_start
        return True

    def _alloc(self, key: int, nbytes: int, category: str) -> None:
        size = -(-nbytes // ROUND) * ROUND
        offset = self.segment.place(size)
        self.high_water = max(self.high_water, self.segment.top)
        frames = self._stack()
        block_id = self._next_block
        self._next_block += 1
        self.blocks[key] = (offset, size, nbytes, frames, block_id)
        self._event(block_id, {"action": "alloc", "addr": BASE_ADDRESS + offset, "size": size,
                               "stream": 0, "frames": frames, "category": category})

    def _free(self, key: int) -> None:
        block = self.blocks.pop(key, None)
        if block is None or self.snapshot is not None:
            return                          # never placed (the failed allocation), or stopped
        offset, size, _, frames, block_id = block
        self.segment.release(offset, size)
        for action in ("free_requested", "free_completed"):
            self._event(block_id, {"action": action, "addr": BASE_ADDRESS + offset,
                                   "size": size, "stream": 0, "frames": frames})

    def _oom(self, nbytes: int, device) -> None:
        free = max(device.capacity - device.in_use, 0)
        self._event(-1, {"action": "oom", "addr": 0, "size": nbytes, "stream": 0,
                         "frames": self._stack(), "device_free": free})

    def _event(self, block_id: int, event: dict) -> None:
        if self.snapshot is not None:
            return
        self.events += 1
        if self.events > self.summarise_after:
            self.pending.append((block_id, event))
        else:
            self._keep(event)

    def _keep(self, event: dict) -> None:
        self.trace.append(event)
        if len(self.trace) > self.max_entries * 1.25:       # trim in batches, not per event
            self._trim()

    def _trim(self) -> None:
        extra = len(self.trace) - self.max_entries
        if extra > 0:
            del self.trace[:extra]
            self.dropped += extra

    def _end_step(self) -> None:
        """Summarise the step that ended: blocks both made and freed in it are left out."""
        self.step += 1
        if not self.pending:
            return
        made = {block for block, e in self.pending if e["action"] == "alloc"}
        freed = {block for block, e in self.pending if e["action"] == "free_completed"}
        transient = made & freed
        for block, event in self.pending:
            if block in transient:
                self.summarised += 1
            else:
                self._keep(event)
        self.pending = []

    def _stack(self) -> list:
        """The training code's frames of the current Python stack, innermost first (shared
        lists, so the pickle stores each distinct stack once)."""
        frame, found = sys._getframe(2), []
        while frame is not None:
            code = frame.f_code
            name = self._code_names.get(code.co_filename, ...)
            if name is ...:
                name = self._code_names[code.co_filename] = relative_name(code.co_filename)
            if name is not None:
                where = (name, frame.f_lineno, code.co_name)
                found.append(self._frames.get(where) or self._frames.setdefault(
                    where, {"filename": name, "line": where[1], "name": where[2]}))
            frame = frame.f_back
        key = tuple(id(f) for f in found)
        return self._stacks.setdefault(key, found)

    # --- the snapshot ---------------------------------------------------------------------
    def stop(self) -> None:
        """Freeze the snapshot: the blocks live now, and the trace that led here."""
        if self.snapshot is not None:
            return
        self._end_step()
        self._trim()
        self.snapshot = {"segments": [self._segment_state()], "device_traces": [self.trace],
                         "debugsim": self._metadata()}

    def _segment_state(self) -> dict:
        total = max(self.high_water, ROUND)
        live = sorted(self.blocks.values())
        blocks, cursor, requested = [], 0, 0
        for offset, size, nbytes, frames, _ in live:
            if offset > cursor:
                blocks.append(_inactive(cursor, offset - cursor))
            blocks.append({"address": BASE_ADDRESS + offset, "size": size,
                           "requested_size": nbytes, "state": "active_allocated",
                           "frames": frames})
            cursor, requested = offset + size, requested + nbytes
        if total > cursor:
            blocks.append(_inactive(cursor, total - cursor))
        allocated = sum(b["size"] for b in blocks if b["state"] == "active_allocated")
        return {"device": 0, "address": BASE_ADDRESS, "total_size": total,
                "allocated_size": allocated, "active_size": allocated,
                "requested_size": requested, "stream": 0, "segment_type": "large",
                "segment_pool_id": (0, 0), "is_expandable": False, "frames": [],
                "blocks": blocks}

    def _metadata(self) -> dict:
        return {
            "simulated": True,
            "device": "simulated device (debugsim): a real allocation tracker over CPU "
                      "tensors; addresses, rounding and the one segment are simulated",
            "capacity_bytes": self.capacity,
            "steps_started": self.step,
            "events_recorded": self.events,
            "events_in_trace": len(self.trace),
            "summarised_after_events": self.summarise_after,
            "events_summarised": self.summarised,
            "max_entries": self.max_entries,
            "events_dropped_oldest": self.dropped,
            "note": (f"after {self.summarise_after} events, blocks allocated and freed within "
                     f"one step are left out of the trace ({self.summarised} events); "
                     f"at most {self.max_entries} events are kept, the oldest dropped first "
                     f"({self.dropped} events)"),
        }


def _inactive(offset: int, size: int) -> dict:
    return {"address": BASE_ADDRESS + offset, "size": size, "requested_size": 0,
            "state": "inactive", "frames": []}


def write(snapshot: dict, path: Path) -> Path:
    """Pickle the snapshot (protocol 4) to `path`, atomically."""
    import os
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(pickle.dumps(snapshot, protocol=4))
    os.replace(tmp, path)
    return path
