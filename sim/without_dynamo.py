"""Keep `torch._dynamo` (torch.compile's front end, over a second to import) out of eager runs.

debugsim never compiles, yet three torch wrappers import `torch._dynamo` on first use:

* `Optimizer.add_param_group`, `zero_grad`, `state_dict` and `load_state_dict` are wrapped in
  `torch._disable_dynamo`, which imports it on the first call (the optimizer's constructor);
* every optimizer's `step` is wrapped in `_use_grad_for_differentiable`, which imports it and
  calls `torch._dynamo.graph_break()` around each step;
* the `__torch_dispatch__` of every `TorchDispatchMode` subclass is wrapped in
  `torch._disable_dynamo` when the class is created (the simulated device is one).

Outside torch.compile these wrappers only run the wrapped function (`_use_grad` also sets grad
mode to the optimizer's `differentiable` flag, which is kept here), so bypassing them changes
no result, only start-up time and per-call overhead. There is no public switch for this, so
this module is the one place that depends on those torch internals: it recognises each wrapper
by its code object, taken from a probe built with torch's own decorator, and uses the function
underneath. Where a probe cannot be built or a wrapper is not recognised (a torch that builds
them differently), it changes nothing: the public path, the same numbers, a slower start.
`REASON` is None when the probes work, else why they failed. Checked on torch 2.2.2, 2.4.1,
2.13.0 and 2.14.1 (tests/test_startup.py: training bit-identical either way, no torch._dynamo
import); torch 2.2 and 2.4 do not yet wrap dispatch modes, so there the device needs nothing.

Do not use these classes under torch.compile: the point of the wrappers is to stop dynamo from
tracing into the optimizer and the dispatch mode.
"""
from __future__ import annotations

import functools

import torch


def _probe_codes():
    """The code objects of torch's two wrappers, or a reason why they cannot be had."""
    try:
        from torch.optim.optimizer import _use_grad_for_differentiable
        disable = torch._disable_dynamo(lambda: None).__code__
        use_grad = _use_grad_for_differentiable(lambda self: None).__code__
    except Exception as error:            # any failure means: take the public path
        return None, None, f"probe failed: {type(error).__name__}: {error}"
    return disable, use_grad, None


_DISABLE_CODE, _USE_GRAD_CODE, REASON = _probe_codes()
_REQUIRED = ("add_param_group", "zero_grad", "step")
_OPTIONAL = ("state_dict", "load_state_dict")
_classes: dict[type, type] = {}


def _beneath(function, code):
    """The function a wrapper with `code` wraps, searching the `__wrapped__` chain; else None."""
    seen = 0
    while function is not None and seen < 8:
        if getattr(function, "__code__", None) is code:
            return getattr(function, "__wrapped__", None)
        function, seen = getattr(function, "__wrapped__", None), seen + 1
    return None


def _eager_step(raw):
    @functools.wraps(raw)
    def step(self, *args, **kwargs):
        # what torch's _use_grad does, minus its torch._dynamo.graph_break() calls
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return raw(self, *args, **kwargs)
    return step


def optimizer_class(cls: type) -> type:
    """A subclass of the torch optimizer `cls` whose methods do not import torch._dynamo, or
    `cls` itself where this torch's wrappers are not recognised."""
    if cls in _classes:
        return _classes[cls]
    result = cls
    if REASON is None:
        members = {}
        for name in _REQUIRED + _OPTIONAL:
            code = _USE_GRAD_CODE if name == "step" else _DISABLE_CODE
            raw = _beneath(getattr(cls, name, None), code)
            if raw is not None:
                members[name] = _eager_step(raw) if name == "step" else raw
        if all(name in members for name in _REQUIRED):
            # same __name__ (torch's profiler labels and reprs use it); a module-level
            # __qualname__ of its own, so pickle can find the class
            qualname = "eager_" + f"{cls.__module__}.{cls.__qualname__}".replace(".", "_")
            result = type(cls.__name__, (cls,), {
                **members, "__module__": __name__, "__qualname__": qualname,
                "__doc__": f"{cls.__module__}.{cls.__qualname__}, without torch's dynamo "
                           f"wrappers (see {__name__})."})
            globals()[qualname] = result
    _classes[cls] = result
    return result


def plain_dispatch(mode_cls: type) -> type:
    """Undo the torch._disable_dynamo wrapper torch puts on a TorchDispatchMode subclass's
    `__torch_dispatch__` (it imports torch._dynamo on the first op and costs time on every op).
    Use as a class decorator; a no-op where the wrapper is absent or not recognised."""
    wrapped = mode_cls.__dict__.get("__torch_dispatch__")
    raw = _beneath(wrapped, _DISABLE_CODE) if _DISABLE_CODE is not None else None
    if raw is not None:
        mode_cls.__torch_dispatch__ = raw
    return mode_cls
