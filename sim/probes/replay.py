"""Anomaly detection: replay the run to its first non-finite step and run that step again
under `torch.autograd.detect_anomaly(check_nan=True)`. Shows what PyTorch reports, not why."""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any

from ..callbacks import Callback
from ..training_code import relative_name
from ..result import RunResult
from ._common import _finite, nonfinite_steps, end_note, _rebuild, _untracked, _Stop, _fmt


_BACKWARD_RE = re.compile(r"Function '(\w+)' returned nan values in its (\d+)\w* output")
_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n(?:[ \t]+(\S.*)\n?)?')



def anomaly(result: RunResult, step: int | None = None) -> dict:
    """Replay the run to its first step with a non-finite loss or gradient (or to `step`) and
    run that step's forward and backward under `torch.autograd.detect_anomaly(check_nan=True)`.

    The report holds what a debugger would show there, as data: the step, its learning rate,
    the forward loss of each micro-batch, the parameters that were already non-finite, what
    anomaly mode raised (its warning and error text, and the forward traceback of the flagged
    autograd Function, cut to the training code's frames), and a plain forward check: the first
    torch function whose output held a NaN (or an inf) while its inputs did not, with the
    traceback anomaly mode recorded for it.
    """
    bad = nonfinite_steps(result)
    if step is None and not bad:
        note = ("no non-finite step in this run" if result.records
                else "no steps were recorded")
        return {"found": False, "step": None, "note": f"{note}; {end_note(result)}"}
    target = bad[0] if step is None else step
    from ..loop import train

    config, callbacks, note = _rebuild(result)
    replay = dataclasses.replace(_untracked(config), steps=max(config.steps, target + 1))
    watch = _StepWatch(target)
    error_text = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                train(replay, [*callbacks, watch])
            except _Stop:
                pass
            except RuntimeError as error:
                if watch.run is None or not _BACKWARD_RE.search(str(error)):
                    raise
                error_text = str(error)
    except Exception as error:
        return {"found": False, "step": target, "note": f"the replay failed: {error}"}
    finally:
        watch.stop_watching()
    if watch.run is None:
        return {"found": False, "step": target,
                "note": f"the replay did not reach step {target}"}
    report = watch.report
    report["anomaly"] = _anomaly_report(error_text, [str(w.message) for w in caught])
    report.update(_context(result, watch.run))
    report["recorded_first_nonfinite"] = bad[0] if bad else None
    if note:
        report["note"] = note
    return report


class _StepWatch(Callback):
    """A callback: at the target step, anomaly mode and the forward check are on from the start
    of the step until its backward is done (or anomaly mode raises); then the replay stops."""

    def __init__(self, target: int) -> None:
        self.target, self.run = target, None
        self.report: dict[str, Any] = {}
        self._anomaly_before = None
        self._forward: _ForwardCheck | None = None

    def on_step_start(self, run) -> None:
        import torch
        if run.step != self.target:
            return
        self.run = run
        params = dict(run.model.named_parameters())
        self.report = {
            "found": True, "step": run.step, "lr": run.lr, "micro_batches": 0,
            "forward_loss": [],
            "params_nonfinite_before": [n for n, p in params.items()
                                        if not bool(torch.isfinite(p).all())],
            "max_abs_param": max(float(p.detach().abs().max()) for p in params.values()),
        }
        self._anomaly_before = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
        torch.autograd.set_detect_anomaly(True, check_nan=True)
        self._forward = _ForwardCheck(run.model)
        self._forward.start()

    def on_loss(self, run, loss_sum, n_tokens, loss):
        if run.step == self.target and self.run is not None:
            self.report["micro_batches"] += 1
            self.report["forward_loss"].append(float(loss.detach()))
        return None

    def on_after_backward(self, run) -> None:
        if run.step != self.target:
            return
        self.report["grad_norm"] = run.grad_norm
        grads = [(n, p.grad) for n, p in run.model.named_parameters() if p.grad is not None]
        self.report["params_with_nonfinite_grad"] = [
            n for n, g in grads if not bool(g.isfinite().all())]
        self.stop_watching()
        raise _Stop

    def on_run_end(self, run) -> None:
        self.stop_watching()

    def stop_watching(self) -> None:
        import torch
        if self._forward is not None:
            self._forward.stop()
            self.report["forward_check"] = self._forward.report()
            self._forward = None
        if self._anomaly_before is not None:
            torch.autograd.set_detect_anomaly(*self._anomaly_before)
            self._anomaly_before = None


class _ForwardCheck:
    """Checks the output of every torch function called in the forward pass for NaN and inf
    (a TorchFunctionMode), and every module's output (forward hooks). Notes the first function
    whose output held a NaN while none of its inputs did, the same for inf, and the first module
    whose output was non-finite while its inputs were finite."""

    def __init__(self, model) -> None:
        self.model = model
        self.first_nan = self.first_inf = self.first_module = None
        self.calls = 0
        self._mode = None
        self._handles: list = []

    def start(self) -> None:
        from torch.overrides import TorchFunctionMode
        check = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                check.inspect(func, args, kwargs or {}, out)
                return out

        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: self.leave(name or "model", m, args, out)))
        self._mode = Mode()
        self._mode.__enter__()

    def stop(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def report(self) -> dict:
        return {"first_nan": self.first_nan, "first_inf": self.first_inf,
                "first_nonfinite_module": self.first_module}

    def leave(self, name: str, module, args, out) -> None:
        if self.first_module is not None:
            return
        outs, ins = _float_tensors(out), _float_tensors(args)
        if outs and not all(_all_finite(t) for t in outs) and all(_all_finite(t) for t in ins):
            self.first_module = {"module": name, "type": type(module).__name__}

    def inspect(self, func, args, kwargs, out) -> None:
        import torch
        self.calls += 1
        if self.first_nan is not None and self.first_inf is not None:
            return
        outs = _float_tensors(out)
        if not outs:
            return
        out_nan = any(bool(torch.isnan(t).any()) for t in outs)
        out_inf = any(bool(torch.isinf(t).any()) for t in outs)
        if not (out_nan or out_inf):
            return
        ins = _float_tensors((args, kwargs))
        scalars = [v for v in _leaves((args, kwargs)) if isinstance(v, float)]
        in_nan = any(bool(torch.isnan(t).any()) for t in ins) or any(v != v for v in scalars)
        in_inf = any(bool(torch.isinf(t).any()) for t in ins) or any(
            math.isinf(v) for v in scalars)
        new_nan = out_nan and not in_nan and self.first_nan is None
        new_inf = out_inf and not in_inf and not in_nan and self.first_inf is None
        if not (new_nan or new_inf):
            return
        from torch.overrides import resolve_name
        tensor_args = [t for t in _leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        grad_fn = next((t.grad_fn for t in outs if t.grad_fn is not None), None)
        recorded = grad_fn.metadata.get("traceback_") if grad_fn is not None else None
        if recorded:
            frames = _training_frames("".join(recorded))
        else:                                   # no autograd node (no_grad): the Python stack
            import traceback
            frames = _training_frames("".join(traceback.format_stack()))
        event = {"function": resolve_name(func) or getattr(func, "__name__", str(func)),
                 "grad_fn": type(grad_fn).__name__ if grad_fn is not None else None,
                 "call": self.calls,
                 "output": _describe(outs[0]),
                 "inputs": [_describe(t) for t in tensor_args[:3]],
                 "traceback": frames}
        if new_nan:
            self.first_nan = event
        if new_inf:
            self.first_inf = event


def _leaves(tree) -> list:
    from torch.utils._pytree import tree_leaves
    return tree_leaves(tree)


def _float_tensors(tree) -> list:
    import torch
    return [t for t in _leaves(tree) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _all_finite(tensor) -> bool:
    import torch
    return bool(torch.isfinite(tensor).all())


def _describe(tensor) -> str:
    """'float32[8, 4, 24, 24] min -inf max 0.61 (nan: 0, inf: 5040)': what `p t` would tell."""
    import torch
    dtype = str(tensor.dtype).replace("torch.", "")
    shape = f"{dtype}[{', '.join(map(str, tensor.shape))}]"
    if tensor.numel() == 0:
        return f"{shape} (empty)"
    values = tensor.detach()
    if not values.is_floating_point() and not values.is_complex():
        values = values.double() if values.dtype != torch.bool else values.long()
    if values.numel() == 1:
        return f"{shape} = {_fmt(float(values.reshape(())))}"
    values = values.float()
    nan, inf = int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
    numbers = values[~torch.isnan(values)]
    if not numbers.numel():
        return f"{shape} all nan"
    lowest, highest = float(numbers.min()), float(numbers.max())
    counts = f" (nan: {nan}, inf: {inf})" if nan or inf else ""
    return f"{shape} min {_fmt(lowest, '.3g')} max {_fmt(highest, '.3g')}{counts}"


def _training_frames(text: str) -> list[dict]:
    """The training code's frames of a Python traceback text, outermost first."""
    frames = []
    for path, line, function, code in _FRAME_RE.findall(text):
        relative = relative_name(path)          # None: torch, the standard library, tests,
        if relative is not None:                # the probe's own replay, the tracker
            frames.append({"file": relative, "line": int(line), "function": function,
                           "code": code.strip()})
    return frames


def _anomaly_report(error_text: str | None, messages: list[str]) -> dict:
    """What anomaly mode printed: its warning (with the forward traceback) and its error."""
    report: dict[str, Any] = {"error": None, "function": None, "output": None,
                              "warning": None, "forward_traceback": []}
    if error_text:
        match = _BACKWARD_RE.search(error_text)
        report.update({"error": f"RuntimeError: {error_text.strip()}",
                       "function": match.group(1), "output": int(match.group(2))})
    detected = [m for m in messages if m.startswith("Error detected in")]
    if detected:
        report["warning"] = "UserWarning: " + detected[0].split("\n", 1)[0]
        report["forward_traceback"] = _training_frames(detected[0])
    return report


def _context(result: RunResult, run) -> dict:
    """What the records say about the steps before it."""
    before = [r for r in result.records if r["step"] < run.step]
    context: dict[str, Any] = {}
    norms = [r.get("param_norm") for r in before]
    if norms and _finite(norms[0]) and _finite(norms[-1]):
        context["param_norm_start"] = norms[0]
        context["param_norm_before"] = norms[-1]
    ratios = [r.get("update_ratio") for r in before if _finite(r.get("update_ratio"))]
    if ratios:
        context["max_update_ratio_before"] = max(ratios)
    grads = [r.get("grad_norm") for r in before if _finite(r.get("grad_norm"))]
    if grads:
        context["max_grad_norm_before"] = max(grads)
    return context


def _render_frames(frames: list[dict], indent: str) -> list[str]:
    lines = []
    for frame in frames:
        lines.append(f'{indent}File "{frame["file"]}", line {frame["line"]}, '
                     f'in {frame["function"]}')
        if frame["code"]:
            lines.append(f"{indent}  {frame['code']}")
    return lines or [f"{indent}(no frame of the training code)"]


def render_anomaly(report: dict) -> str:
    if not report.get("found"):
        return f"anomaly detection: {report.get('note')}"
    r = report
    losses = ", ".join(_fmt(v) for v in r.get("forward_loss", []))
    lines = [f"step {r['step']}  lr {_fmt(r.get('lr'), '.3g')}  "
             f"forward loss {losses or '-'}"
             + (f"  (micro-batches run: {r['micro_batches']})"
                if r.get("micro_batches", 0) > 1 else "")]
    nonfinite = r.get("params_nonfinite_before") or []
    lines.append("parameters non-finite at the start of the step: "
                 + (", ".join(nonfinite[:6]) + (f" (+{len(nonfinite) - 6} more)"
                                                if len(nonfinite) > 6 else "")
                    if nonfinite else "none")
                 + f"; largest |parameter| {_fmt(r.get('max_abs_param'))}")
    if "param_norm_start" in r:
        norms = f"parameter norm {_fmt(r['param_norm_start'])} at step 0" + (
            f", {_fmt(r['param_norm_before'])} at step {r['step'] - 1}" if r["step"] > 1 else "")
        lines.append(f"records before this step: {norms}; "
                     f"largest grad norm {_fmt(r.get('max_grad_norm_before'))}; largest "
                     f"update/param {_fmt(r.get('max_update_ratio_before'), '.3g')}")

    lines.append("")
    lines.append("with torch.autograd.detect_anomaly(check_nan=True):")
    a = r.get("anomaly") or {}
    if a.get("warning"):
        lines.append(f"  {a['warning']}")
        lines.extend(_render_frames(a.get("forward_traceback") or [], "    "))
    if a.get("error"):
        lines.append(f"  {a['error']}")
    if not a.get("warning") and not a.get("error"):
        grads = r.get("params_with_nonfinite_grad")
        lines.append("  backward finished without an error; grad norm "
                     f"{_fmt(r.get('grad_norm'))}"
                     + (f"; non-finite gradients in {len(grads)} parameter(s)" if grads else ""))

    check = r.get("forward_check") or {}
    lines.append("")
    lines.append("forward check (nan/inf in each torch function's and module's output):")
    events = sorted(((e["call"], kind, e) for kind, e in (("nan", check.get("first_nan")),
                                                          ("inf", check.get("first_inf"))) if e),
                    key=lambda item: item[0])
    if not events and not check.get("first_nonfinite_module"):
        lines.append("  no output held nan or inf")
    for call, kind, e in events:
        made = f"first {kind} in an output (none in its inputs)"
        lines.append(f"  {made}: {e['function']}"
                     + (f" -> {e['grad_fn']}" if e.get("grad_fn") else ""))
        lines.append(f"    output {e['output']}")
        for text in e["inputs"]:
            lines.append(f"    input  {text}")
        lines.extend(_render_frames(e["traceback"], "    "))
    if check.get("first_nonfinite_module"):
        m = check["first_nonfinite_module"]
        lines.append(f"  first module with a nan/inf output (none in its inputs): "
                     f"{m['module']} ({m['type']})")
    if r.get("note"):
        lines.append(f"note: {r['note']}")
    return "\n".join(lines)


NAME = "anomaly"
USAGE = "anomaly"
HELP = "re-run the first bad step under autograd anomaly detection"
ENGINES = ("training",)
ORDER = 70                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_anomaly(anomaly(result))
