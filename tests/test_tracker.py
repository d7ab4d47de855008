"""The simulated device's counting rules, including the ones its fast paths must keep."""
import gc

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from debugsim.sim.device import MiB, SimulatedDevice, SimulatedOutOfMemory

KIB = 1024


def floats(n):                     # n fp32 values = 4n bytes
    return torch.empty(n, dtype=torch.float32)


def test_a_new_tensor_is_counted_once_and_released_when_freed():
    device = SimulatedDevice()
    base = floats(256)                            # made outside: not counted
    with device, device.phase_of("activations"):
        x = base + 1                              # 1 KiB
        assert device.in_use == KIB and device.by_category["activations"] == KIB
        views = [x.view(16, 16), x[:10], x.unsqueeze(0), x.detach()]
        x.add_(1)
        assert device.in_use == KIB               # views and in-place results share it
        y = floats(256) + 1                       # empty (freed at once) then add: peak 3 KiB
        assert device.in_use == 2 * KIB
        del x, views, y
        gc.collect()
        assert device.in_use == 0 and device.by_category["activations"] == 0
    assert device.peak == 3 * KIB


def test_a_view_of_an_untracked_tensor_counts_its_storage():
    device = SimulatedDevice()
    with device:
        with device.untracked():
            host = floats(512) * 2                # made while untracked: not counted
        assert device.in_use == 0
        with device.phase_of("inputs"):
            flat = host.view(-1)                  # ... until the program views it
        assert device.in_use == 2 * KIB and device.by_category["inputs"] == 2 * KIB
        del flat


def test_tuple_and_list_results_are_counted():
    device = SimulatedDevice()
    with device:
        a, b = (floats(256) + 0).split(128)       # views of one fresh storage
        parts = torch._foreach_mul([floats(256), floats(512)], 2.0)
        assert device.in_use == KIB + KIB + 2 * KIB
        del a, b, parts


def test_non_tensor_results_are_ignored():
    device = SimulatedDevice()
    with device:
        x = floats(4).fill_(1.5)
        assert x.sum().item() == 6.0              # .item() returns a number, not a tensor
        assert device.in_use == 16 and device.peak == 16 + 4   # the sum's scalar is gone


def test_untracked_leaves_the_dispatch_stack_and_comes_back():
    seen = []

    class Counting(SimulatedDevice):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_dispatch__(func, types, args, kwargs)

    device = Counting()
    with device:
        with device.untracked():
            with device.untracked():              # nested
                floats(8) + 1
            floats(8) + 1
        assert seen == [] and not device.paused
        floats(8) + 1
    assert seen                                    # back on the stack after the block


def test_untracked_under_another_mode_only_pauses():
    class Other(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    device = SimulatedDevice()
    with device:
        with Other():
            with device.untracked():              # the device is not on top: do not pop it
                y = floats(64) + 1
        assert device.in_use == 0
        z = floats(64) + 1
        assert device.in_use == 256
        del y, z


def test_untracked_outside_the_device_is_harmless():
    device = SimulatedDevice()
    with device.untracked():
        floats(8) + 1
    assert not device.paused and device.in_use == 0
    disabled = SimulatedDevice(enabled=False)
    with disabled, disabled.untracked():
        floats(8) + 1
    assert disabled.in_use == 0


def test_over_budget_raises_with_the_figures_of_the_failing_allocation():
    device = SimulatedDevice(capacity_bytes=3 * KIB)
    base = floats(512)
    with device, device.phase_of("activations"):
        keep = base + 0                                 # 2 KiB
        with pytest.raises(SimulatedOutOfMemory) as caught:
            base + 0                                    # 2 more: over the 3 KiB
    error = caught.value
    assert (error.requested, error.in_use, error.phase) == (2 * KIB, 4 * KIB, "activations")
    assert device.peak == 4 * KIB and device.peak_breakdown["activations"] == 4 * KIB
    assert isinstance(error, torch.OutOfMemoryError)           # what real code catches
    assert str(error).startswith("CUDA out of memory. Tried to allocate 2.00 KiB. GPU 0 "
                                 "(simulated device) has a total capacity of 3.00 KiB of "
                                 "which 1024 bytes is free.")
    del keep


def test_step_peak_and_parameters():
    device = SimulatedDevice()
    model = torch.nn.Linear(16, 16)
    with device:
        device.track_module(model)
        params = sum(p.numel() * 4 for p in model.parameters())
        assert device.by_category["parameters"] == params
        device.reset_step_peak()
        with device.phase_of("activations"):
            out = model(torch.ones(4, 16))
        assert device.step_peak >= params + out.numel() * 4
        assert device.peak / MiB == device.peak / 2 ** 20
