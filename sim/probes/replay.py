"""Anomaly detection: replay the first non-finite step and name the op."""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any

from ..result import RunResult
from ._common import _finite, nonfinite_steps, end_note, _rebuild, _untracked, _Stop, _fmt


_BACKWARD_RE = re.compile(r"Function '(\w+)' returned nan values in its (\d+)\w* output")


def anomaly(result: RunResult, step: int | None = None) -> dict:
    """Replay the run to its first step with a non-finite loss or gradient, then recompute that
    step's forward and backward under `torch.autograd.detect_anomaly(check_nan=True)` while
    watching every operator: name the op that first produced a NaN (and the one that first
    produced an inf), the module it ran in, whether the forward loss was already non-finite,
    and the backward Function that anomaly mode flags.

    `step` replays a chosen step instead of the first non-finite one.
    """
    bad = nonfinite_steps(result)
    if step is None and not bad:
        note = ("no non-finite step in this run" if result.records
                else "no steps were recorded")
        return {"found": False, "step": None, "note": f"{note}; {end_note(result)}"}
    target = bad[0] if step is None else step
    from ..callbacks import Callback
    from ..loop import train

    config, callbacks, note = _rebuild(result)
    replay = dataclasses.replace(_untracked(config), steps=max(config.steps, target + 1))
    loss_scale_skip = config.precision == "fp16" and config.loss_scale == "dynamic"

    class Halt(Callback):
        """Stops the replay after the backward of the target step, before its update."""
        def __init__(self) -> None:
            self.run, self.batches = None, []

        def on_step_start(self, run):
            self.batches = []

        def on_batch(self, run, batch):
            self.batches.append(batch)      # after the fault callbacks: what the model saw

        def on_after_backward(self, run):
            bad_now = not math.isfinite(run.loss) or not run.grads_finite
            if loss_scale_skip and math.isfinite(run.loss):
                bad_now = False             # a deliberate overflow skip of the loss scaler
            if run.step == target or (step is None and bad_now):
                self.run = run
                raise _Stop

    halt = Halt()
    try:
        train(replay, [*callbacks, halt])
    except _Stop:
        pass
    except Exception as error:
        return {"found": False, "step": target, "note": f"the replay failed: {error}"}
    run = halt.run
    if run is None:
        return {"found": False, "step": target,
                "note": f"the replay reached no non-finite step (expected step {target})"}
    report = _replay_step(run, halt.batches, callbacks)
    report.update(_context(result, run))
    report["step"] = run.step
    report["recorded_first_nonfinite"] = bad[0] if bad else None
    if note:
        report["note"] = note
    return report


def _replay_step(run, batches, callbacks) -> dict:
    """Recompute one step's micro-batches under anomaly mode and the non-finite op watcher."""
    import torch
    from ..callbacks import CallbackList
    from ..loop import autocast_for, loss_scale_of, token_loss

    config, model = run.config, run.model
    hooks = CallbackList(callbacks)
    names = {module: name for name, module in model.named_modules()}
    watcher = _NonFiniteWatcher()
    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(
            lambda m, args, name=name: watcher.stack.append(name or "model")))
        handles.append(module.register_forward_hook(
            lambda m, args, out, name=name: watcher.leave(name or "model", args, out)))
    params_nonfinite = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    max_abs_param = max(float(p.detach().abs().max()) for p in model.parameters())
    scale = loss_scale_of(config)
    report: dict[str, Any] = {"found": True, "params_nonfinite_before": params_nonfinite,
                              "max_abs_param": max_abs_param}
    model.zero_grad(set_to_none=True)
    try:
        for micro, batch in enumerate(batches):
            watcher.reset()
            watcher.phase = "forward"
            captured = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with torch.autograd.detect_anomaly(check_nan=True):
                    with watcher:
                        with autocast_for(config):
                            logits = model(batch.tokens, batch.key_padding)
                            watcher.stack.append("the loss computation")
                            loss_sum, n_tokens = token_loss(logits, batch.targets)
                            loss = loss_sum / n_tokens.clamp(min=1)
                            loss = hooks.loss(run, loss_sum, n_tokens, loss)
                            watcher.stack.pop()
                        forward_loss = float(loss.detach())
                        watcher.phase = "backward"
                        scaled = loss / config.grad_accum_steps
                        if run.scaler is not None:
                            scaled = scaled * run.scaler.get_scale()
                        elif scale is not None:
                            scaled = scaled * scale
                        try:
                            scaled.backward()
                        except RuntimeError as error:
                            captured.append(str(error))
                warning_text = [str(w.message) for w in caught
                                if "Error detected in" in str(w.message)]
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grads_finite = all(bool(torch.isfinite(g).all()) for g in grads)
            if (math.isfinite(forward_loss) and grads_finite and not captured
                    and micro < len(batches) - 1):
                continue                    # this micro-batch was fine; the next one is not
            report.update({
                "micro": micro,
                "forward_loss": forward_loss,
                "forward_nonfinite": not math.isfinite(forward_loss),
                "n_tokens": int(n_tokens),
                "grads_finite": grads_finite,
                "first_nan": watcher.first_nan,
                "first_inf": watcher.first_inf,
                "first_nonfinite_module": watcher.first_module,
                "backward_function": None, "backward_output": None,
                "forward_traceback": None,
            })
            for message in captured:
                match = _BACKWARD_RE.search(message)
                if match:
                    report["backward_function"] = match.group(1)
                    report["backward_output"] = int(match.group(2))
                else:
                    report["backward_error"] = message
            if warning_text:
                report["forward_traceback"] = _user_frames(warning_text[0])
            break
    finally:
        for handle in handles:
            handle.remove()
    report["culprit"] = _culprit(report)
    return report


class _NonFiniteWatcher:
    """A dispatch mode that notes the first op whose output holds a NaN (inf) while none of its
    inputs does: the op that created it, not one that merely passed it on."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.phase = "forward"
        self.reset()

    def reset(self) -> None:
        self.first_nan = self.first_inf = self.first_module = None
        self.stack = []
        self.ops = 0                    # ops seen so far: orders the first NaN and first inf

    def leave(self, name: str, args, out) -> None:
        """Forward hook: note the first module whose output is non-finite while its inputs
        were finite (the module that produced it, not one that passed it on)."""
        import torch
        from torch.utils._pytree import tree_leaves
        if self.stack and self.stack[-1] == name:
            self.stack.pop()
        if self.first_module is not None:
            return
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if outs and not all(bool(torch.isfinite(t).all()) for t in outs):
            ins = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor)
                   and t.is_floating_point()]
            if all(bool(torch.isfinite(t).all()) for t in ins):
                self.first_module = name

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        watcher = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                watcher.inspect(func, args, kwargs or {}, out)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)

    def inspect(self, func, args, kwargs, out) -> None:
        import torch
        from torch.utils._pytree import tree_leaves
        self.ops += 1
        if self.first_nan is not None and self.first_inf is not None:
            return
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)
                and t.is_floating_point()]
        if not outs:
            return
        out_nan = any(bool(torch.isnan(t).any()) for t in outs)
        out_inf = any(bool(torch.isinf(t).any()) for t in outs)
        if not (out_nan or out_inf):
            return
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
               and t.is_floating_point()]
        scalars = [v for v in tree_leaves((args, kwargs)) if isinstance(v, float)]
        in_nan = any(bool(torch.isnan(t).any()) for t in ins) or any(v != v for v in scalars)
        in_inf = any(bool(torch.isinf(t).any()) for t in ins) or any(
            math.isinf(v) for v in scalars)
        where = {"op": _op_name(func), "phase": self.phase,
                 "module": self.stack[-1] if self.stack else
                 ("the backward pass" if self.phase == "backward" else "outside the model"),
                 "inputs_had_inf": in_inf, "index": self.ops,
                 "dtype": str(outs[0].dtype).replace("torch.", "")}
        if (out_nan and not in_nan and self.first_nan is None) or (
                out_inf and not in_inf and not in_nan and self.first_inf is None):
            where["detail"] = _op_detail(where["op"], [
                t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)],
                overflow=out_inf and not in_inf and not in_nan, dtype=outs[0].dtype)
        if out_nan and not in_nan and self.first_nan is None:
            self.first_nan = where
        if out_inf and not in_inf and not in_nan and self.first_inf is None:
            self.first_inf = where


def _op_detail(op: str, inputs, overflow: bool = False, dtype=None) -> str:
    """What about an op's inputs made it produce a non-finite value, in words."""
    import torch
    if not inputs:
        return ""
    floats = [t for t in inputs if t.is_floating_point()]
    x = inputs[0] if inputs[0].is_floating_point() else inputs[0].float()
    if "softmax" in op:
        rows = x.reshape(-1, x.shape[-1]) if x.dim() else x.reshape(1, 1)
        dead = int(torch.isneginf(rows).all(-1).sum())
        if dead:
            return f"{dead} of {rows.shape[0]} input rows were entirely -inf (nothing to attend to)"
    if op.startswith("aten.div") and len(inputs) >= 2:
        num, den = inputs[0], inputs[1]
        try:
            both = int(((num == 0) & (den == 0)).sum())
        except RuntimeError:                # shapes that do not broadcast: skip the 0/0 count
            both = 0
        if both:
            return f"0 / 0 in {both} element(s)"
        zeros = int((den == 0).sum())
        if zeros:
            return f"the divisor was 0 in {zeros} element(s)"
    if op.startswith("aten.log") and "softmax" not in op and int((x <= 0).sum()):
        return f"{int((x <= 0).sum())} input(s) <= 0"
    if "sqrt" in op and int((x < 0).sum()):
        return f"{int((x < 0).sum())} negative input(s)"
    finite = [t[torch.isfinite(t)] for t in floats]
    finite = [t for t in finite if t.numel()]
    largest = max(float(t.abs().max()) for t in finite) if finite else None
    if overflow and dtype is not None and dtype.is_floating_point:
        return (f"overflow: {str(dtype).replace('torch.', '')} holds at most "
                f"{torch.finfo(dtype).max:.3g}"
                + (f"; largest |input| {largest:.3g}" if largest is not None else ""))
    return f"largest |input| {largest:.3g}" if largest is not None else ""


def _op_name(func) -> str:
    name = str(func)                    # e.g. "aten._softmax.default"
    return name[:-len(".default")] if name.endswith(".default") else name


def _user_frames(text: str) -> list[str]:
    """The project's own frames from anomaly mode's forward traceback, innermost last."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s+(.+)', text)
    keep = [f"{path.rsplit('/', 1)[-1]}:{line} in {fn}: {code.strip()}"
            for path, line, fn, code in frames
            if ("/sim/" in path or "/scenarios/" in path) and "/probes/" not in path]
    return keep[-4:]


def _culprit(report: dict) -> str | None:
    """One phrase naming where the first non-finite value came from: the earlier of the op that
    first made an inf (an overflow) and the op that first made a NaN."""
    if report.get("params_nonfinite_before"):
        return "parameters were already non-finite before this step (an earlier update)"
    events = [(e["index"], kind, e) for kind, e in (("NaN", report.get("first_nan")),
                                                     ("inf", report.get("first_inf"))) if e]
    if events:
        _, kind, e = min(events, key=lambda item: item[0])
        where = f" in {_module_words(e['module'])}" if e["phase"] == "forward" else ""
        what = "overflow to inf" if kind == "inf" else "NaN"
        return f"{e['op']}{where} ({e['phase']}, {what})"
    if report.get("backward_function"):
        return f"{report['backward_function']} (backward)"
    return None


def _module_words(module: str) -> str:
    """'blocks.0.attn' -> "module 'blocks.0.attn'"; descriptive names stay as they are."""
    return module if " " in module else f"module '{module}'"


def _context(result: RunResult, run) -> dict:
    """What the records say about the steps leading up to it (for an exploding run)."""
    before = [r for r in result.records if r["step"] < run.step]
    context: dict[str, Any] = {"lr": run.lr}
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


def render_anomaly(report: dict) -> str:
    if not report.get("found"):
        return f"anomaly detection: {report.get('note')}"
    r = report
    lines = [f"anomaly detection at step {r['step']}"
             + (f", micro-batch {r['micro']}" if r.get("micro") else "")
             + f" (lr {_fmt(r.get('lr'), '.3g')})"]
    lines.append(f"  forward loss: {_fmt(r.get('forward_loss'))}"
                 + ("  <-- already non-finite before backward" if r.get("forward_nonfinite")
                    else "") + f"  (supervised tokens: {r.get('n_tokens')})")
    if r.get("params_nonfinite_before"):
        lines.append(f"  parameters already non-finite before this step: "
                     f"{', '.join(r['params_nonfinite_before'][:6])}")
    lines.append(f"  largest |parameter|: {_fmt(r.get('max_abs_param'))}")
    if "param_norm_start" in r:
        lines.append(f"  parameter norm: {_fmt(r['param_norm_start'])} at step 0 -> "
                     f"{_fmt(r['param_norm_before'])} just before; largest update/param ratio "
                     f"{_fmt(r.get('max_update_ratio_before'), '.3g')}")
    events = sorted((r[key]["index"], key) for key in ("first_inf", "first_nan") if r.get(key))
    for _, key in events:
        where, label = r[key], "first inf made by" if key == "first_inf" else "first NaN made by"
        if where:
            place = ("" if where["phase"] == "backward"
                     else f" in {_module_words(where['module'])}")
            lines.append(f"  {label:<18} {where['op']}{place} ({where['phase']})"
                         + (f": {where['detail']}" if where.get("detail") else ""))
    if r.get("first_nonfinite_module"):
        lines.append(f"  first module to turn finite inputs into a non-finite output: "
                     f"{r['first_nonfinite_module']}")
    if r.get("backward_function"):
        lines.append(f"  anomaly mode: Function '{r['backward_function']}' returned nan values "
                     f"in its {r['backward_output']}th output"
                     + (" (the backward only carries the forward's NaN back)"
                        if r.get("forward_nonfinite") else ""))
    elif r.get("backward_error"):
        lines.append(f"  anomaly mode: {r['backward_error']}")
    else:
        lines.append("  anomaly mode: no backward Function returned NaN")
    if r.get("forward_traceback"):
        lines.append("  forward call of that Function:")
        lines.extend(f"    {frame}" for frame in r["forward_traceback"])
    if r.get("culprit"):
        lines.append(f"  => first non-finite value: {r['culprit']}")
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    return "\n".join(lines)


NAME = "anomaly"
USAGE = "anomaly"
HELP = "re-run the first bad step under autograd anomaly detection"
ENGINES = ("training",)
ORDER = 70                      # place in the help list


def run(result: RunResult, args: list[str], plot_dir) -> str:
    return render_anomaly(anomaly(result))
