"""The training loop: one function, readable in one sitting.

Each step runs the same labelled stages in the same order, and the hook points (see
`callbacks.py`) sit exactly at their boundaries, so a fault or a fix can be mapped onto the
line of the loop it changes:

    1. learning rate     2. forward + loss     3. backward     4. unscale + measure
    5. clip              6. update             7. zero grads    8. evaluate     9. log
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .callbacks import CallbackList
from .config import TrainConfig
from .data import IGNORE, LAUNCH, Batch, make_stream
from .implementations import chosen, implements
from .pretrained import pretrained_state
from .device import MiB, SimulatedDevice, SimulatedOutOfMemory
from .models import build_model
from .dpo import dpo_loss
from .preferences import PreferenceStream, ranking_loss
from .rlhf import RolloutStream, rlhf_loss
from .without_dynamo import optimizer_class


@dataclass
class Control:
    """Flags a callback may set; the loop reads them."""
    skip_update: bool = False
    stop: bool = False


@dataclass
class Run:
    """What the loop shares with callbacks: the live objects and the current step's state."""
    config: TrainConfig
    model: Any
    optimizer: Any
    stream: Any
    device: SimulatedDevice
    scaler: Any = None
    step: int = 0
    lr: float = 0.0
    batch: Batch | None = None
    logits: Any = None                 # last micro-batch's logits, still attached to the graph
    loss: float = float("nan")         # mean loss over the step's micro-batches
    grad_norm: float = float("nan")    # global gradient norm before clipping, unscaled
    param_grad_norms: list = field(default_factory=list)   # per parameter, same order
    grads_finite: bool = True
    updated: bool = False              # whether the optimizer applied this step's update
    eval_loss: float | None = None
    loss_scale: float | None = None
    record: dict | None = None         # the step's telemetry record, once the Recorder made it
    history: list = field(default_factory=list)   # the confidence metric of each micro-batch
    control: Control = field(default_factory=Control)
    status: str = "running"            # running | completed | oom | interrupted | error
    error: str | None = None


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warmup from lr/100 to lr, then constant, cosine or linear decay to lr/10."""
    if step < config.warmup_steps:
        return config.lr * (0.01 + 0.99 * step / config.warmup_steps)
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    floor = config.lr * 0.1
    if config.schedule == "cosine":
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr - (config.lr - floor) * progress


def build_optimizer(config: TrainConfig, model, params=None) -> torch.optim.Optimizer:
    """torch's own optimizer over `params` (default: all of the model's), in a subclass that
    does not import torch._dynamo (see `without_dynamo`; torch's class itself where that is
    not possible)."""
    params = model.parameters() if params is None else params
    if config.optimizer == "sgd":
        return optimizer_class(torch.optim.SGD)(params, lr=config.lr, momentum=config.momentum,
                                                weight_decay=config.weight_decay, foreach=True)
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(kind)(params, lr=config.lr, weight_decay=config.weight_decay,
                                 foreach=True)


def token_loss(logits, targets):
    """Summed cross-entropy over supervised positions, and how many positions there were."""
    loss_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                               ignore_index=IGNORE, reduction="sum")
    return loss_sum, (targets != IGNORE).sum()


def batch_loss(config: TrainConfig, output, batch: Batch):
    """The summed loss of a batch and how many items it counts: tokens for a language model,
    pairs for a reward model (the pairwise ranking loss) or a policy tuned with DPO, rollouts
    for a policy tuned by policy gradient (RLHF)."""
    if config.model == "rlhf":
        return rlhf_loss(config, output, batch)
    if config.data == "preferences":
        if config.model == "dpo":
            return dpo_loss(config, output, batch)
        return ranking_loss(config, output, batch)
    return token_loss(output, batch.targets)


def autocast_for(config: TrainConfig):
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if config.precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=config.device, dtype=dtype)


def loss_scale_of(config: TrainConfig) -> float | str | None:
    """None without scaling, 'dynamic' for a GradScaler, or a fixed factor."""
    if config.precision != "fp16" or config.loss_scale == "none":
        return None
    return "dynamic" if config.loss_scale == "dynamic" else float(config.loss_scale)


@implements("eval_autograd", "graph_free")
def evaluate(run: Run, callbacks: CallbackList) -> float:
    """Step 8 of the loop: the held-out loss on the fixed evaluation batch, with the model in
    eval mode for the pass."""
    run.model.eval()
    with torch.no_grad(), run.device.phase_of("activations"):
        callbacks.fire("on_eval_start", run)
        with run.device.untracked():
            batch = run.stream.eval_batch()
        padding = _to(batch.key_padding, run.config.device)
        with autocast_for(run.config):
            logits = run.model(batch.tokens.to(run.config.device), padding)
        loss_sum, count = batch_loss(run.config, logits, Batch(
            batch.tokens, batch.targets.to(run.config.device), padding))
        value = (loss_sum / count.clamp(min=1)).item()
    run.model.train()
    return value


@implements("eval_autograd", "graph_kept")
def held_out_loss(run: Run, callbacks: CallbackList) -> float:
    """Step 8 of the loop: the held-out loss on the fixed evaluation batch, with the model in
    eval mode for the pass."""
    run.model.eval()
    with run.device.phase_of("activations"):
        callbacks.fire("on_eval_start", run)
        with run.device.untracked():
            batch = run.stream.eval_batch()
        padding = _to(batch.key_padding, run.config.device)
        with autocast_for(run.config):
            logits = run.model(batch.tokens.to(run.config.device), padding)
        loss_sum, count = batch_loss(run.config, logits, Batch(
            batch.tokens, batch.targets.to(run.config.device), padding))
        value = (loss_sum / count.clamp(min=1)).item()
    run.model.train()
    return value


def train(config: TrainConfig, callbacks=(), track_memory: bool = False) -> Run:
    """Train a fresh model under `config`; callbacks observe and alter the run.

    Memory is counted on the simulated device when `track_memory` is set, and always when the
    config sets a memory budget (the tracker enforces it). A simulated out-of-memory error
    propagates (as a real one would) after `on_run_end`.
    """
    torch.manual_seed(config.seed)
    device = SimulatedDevice(int(config.memory_budget_mib * MiB),
                             enabled=track_memory or config.memory_budget_mib > 0)
    stream = PreferenceStream(config) if config.data == "preferences" else \
        RolloutStream(config, train) if config.data == "rollouts" else make_stream(config)
    model = build_model(config).to(config.device)
    if config.base_model == "pretrained":
        model.load_state_dict(pretrained_state(config, train))
    if config.data == "rollouts":
        stream.attach(model)            # the policy answers the prompts it learns from
    params = chosen(config, "lora_setup")(model, config) if config.lora_r else None
    optimizer = build_optimizer(config, model, params)
    scale = loss_scale_of(config)
    scaler = torch.amp.GradScaler(config.device) if scale == "dynamic" else None
    run = Run(config, model, optimizer, stream, device, scaler)
    hooks = CallbackList(callbacks)
    set_lr, mean_loss, log_confidence, held_out, reset_grads, done = (
        chosen(config, slot) for slot in ("lr_update", "loss_mean", "confidence_log",
                                          "eval_autograd", "grad_reset", "step_budget"))
    try:
        with device:
            device.track_module(model)
            hooks.fire("on_run_start", run)
            for step in range(config.steps):
                run.step, run.control = step, Control()
                device.reset_step_peak()
                # 1. learning rate
                run.lr = set_lr(optimizer, config, step)
                hooks.fire("on_step_start", run)
                losses = []
                for micro in range(config.grad_accum_steps):
                    # 2. forward + loss
                    with device.untracked():               # the data pipeline is host-side
                        batch = hooks.batch(run, stream.batch(step, micro))
                    with device.phase_of("inputs"):            # copying the batch to the device
                        run.batch = batch = Batch(batch.tokens.to(config.device, copy=True),
                                                  batch.targets.to(config.device, copy=True),
                                                  _to(batch.key_padding, config.device))
                    with device.phase_of("activations"), autocast_for(config):
                        run.logits = model(batch.tokens, batch.key_padding)
                        loss_sum, n_tokens = batch_loss(config, run.logits, batch)
                        loss = mean_loss(loss_sum, n_tokens)
                        loss = hooks.loss(run, loss_sum, n_tokens, loss)
                        log_confidence(run.history, run.logits)
                    losses.append(loss.detach())
                    # 3. backward (gradients add up across micro-batches)
                    with device.phase_of("gradients"):
                        scaled = loss / config.grad_accum_steps
                        if scaler is not None:
                            scaled = scaler.scale(scaled)
                        elif scale is not None:
                            scaled = scaled * scale
                        scaled.backward()
                run.loss = torch.stack(losses).mean().item()
                # 4. unscale + measure
                with device.phase_of("gradients"):
                    _unscale(run, scale)
                    run.param_grad_norms = _grad_norms(model)
                run.grad_norm = math.sqrt(sum(n * n for n in run.param_grad_norms if n is not None))
                run.grads_finite = math.isfinite(run.grad_norm)
                hooks.fire("on_after_backward", run)
                # 5. clip
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                hooks.fire("on_before_update", run)
                # 6. update (optionally skipping non-finite steps)
                skip = run.control.skip_update or (
                    config.skip_nonfinite and not (run.grads_finite and math.isfinite(run.loss)))
                with device.phase_of("optimizer_state"):
                    run.updated = _update(run, skip)
                # 7. zero grads
                reset_grads(optimizer, step)
                # 8. evaluate
                last = step == config.steps - 1
                if last or (config.eval_every and (step + 1) % config.eval_every == 0):
                    run.eval_loss = held_out(run, hooks)
                else:
                    run.eval_loss = None
                # 9. log
                hooks.fire("on_step_end", run)
                run.logits = run.record = None
                if run.control.stop or done(config, step):
                    break
        run.status = "completed"
    except KeyboardInterrupt:
        run.status = "interrupted"
        raise
    except Exception as error:
        run.status = "oom" if isinstance(error, SimulatedOutOfMemory) else "error"
        run.error = str(error)
        raise
    finally:
        hooks.fire("on_run_end", run)
    return run


@implements("lr_update", "from_schedule")
def set_learning_rate(optimizer, config, step):
    """Step 1 of the loop: set the lr of `step` (the warmup, then the schedule) on every
    parameter group, and return it for the log."""
    lr = lr_at(config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@implements("lr_update", "compounding_ramp")
def warm_up_lr(optimizer, config, step):
    """Step 1 of the loop: set the lr of `step` (the warmup, then the schedule) on every
    parameter group, and return it for the log."""
    warmup = config.warmup_steps
    if warmup and step == 0:
        lr = config.lr / 10
    elif warmup:
        lr = optimizer.param_groups[0]["lr"] * 10 ** (1 / warmup)
    else:
        lr = lr_at(config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@implements("lr_update", "times_ten")
def apply_lr(optimizer, config, step):
    """Step 1 of the loop: set the lr of `step` (the warmup, then the schedule) on every
    parameter group, and return it for the log."""
    lr = lr_at(config, step) * 10
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@implements("lr_update", "times_tenth")
def update_lr(optimizer, config, step):
    """Step 1 of the loop: set the lr of `step` (the warmup, then the schedule) on every
    parameter group, and return it for the log."""
    lr = lr_at(config, step) * 0.1
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@implements("loss_mean", "count_at_least_one")
def mean_token_loss(loss_sum, n_tokens):
    """Step 2 of the loop: the micro-batch's loss, the summed token loss over the number of
    tokens that carry a label."""
    return loss_sum / n_tokens.clamp(min=1)


@implements("loss_mean", "count_as_is")
def average_token_loss(loss_sum, n_tokens):
    """Step 2 of the loop: the micro-batch's loss, the summed token loss over the number of
    tokens that carry a label."""
    return loss_sum / n_tokens


@implements("confidence_log", "python_float")
def log_confidence(history, logits):
    """Step 2 of the loop: log how confident the model is on this micro-batch (its mean
    top-token probability) to the run's metric history."""
    history.append(logits.softmax(-1).amax(-1).mean().item())


@implements("confidence_log", "graph_tensor")
def record_confidence(history, logits):
    """Step 2 of the loop: log how confident the model is on this micro-batch (its mean
    top-token probability) to the run's metric history."""
    confidence = logits.softmax(-1).amax(-1).mean()
    history.append(confidence)


@implements("step_budget", "recipe_steps")
def out_of_steps(config, step) -> bool:
    """After `step`: whether the run has used up its step budget, so training ends."""
    return step + 1 >= config.steps


@implements("step_budget", "template_steps")
def steps_used_up(config, step) -> bool:
    """After `step`: whether the run has used up its step budget, so training ends."""
    return step + 1 >= LAUNCH.get("max_steps", config.steps)


@implements("grad_reset", "grads_to_none")
def zero_grad(optimizer, step):
    """After the update of `step`: clear the gradients of every parameter the optimizer
    holds, so the next backward starts from nothing."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = None


@implements("grad_reset", "grads_detached")
def clear_grads(optimizer, step):
    """After the update of `step`: clear the gradients of every parameter the optimizer
    holds, so the next backward starts from nothing."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad.detach_()


@implements("grad_reset", "after_accumulation")
def reset_gradients(optimizer, step):
    """After the update of `step`: clear the gradients of every parameter the optimizer
    holds, so the next backward starts from nothing."""
    if (step + 1) % LAUNCH["grad_accum_steps"] == 0:
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None


def _unscale(run: Run, scale) -> None:
    """Undo loss scaling on the gradients, so what follows sees their true size."""
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
        run.loss_scale = run.scaler.get_scale()
    elif scale is not None:
        torch._foreach_div_([p.grad for p in run.model.parameters() if p.grad is not None], scale)
        run.loss_scale = scale


def _update(run: Run, skip: bool) -> bool:
    """Apply the optimizer step; returns whether the parameters were updated."""
    if run.scaler is None:
        if not skip:
            run.optimizer.step()
        return not skip
    if skip:
        run.scaler.update()
        return False
    before = run.scaler.get_scale()
    run.scaler.step(run.optimizer)         # skips the step itself if it finds inf/NaN
    run.scaler.update()
    return run.scaler.get_scale() >= before   # a backoff means the step was skipped


def _grad_norms(model) -> list[float | None]:
    """The L2 norm of each parameter's gradient (None where it has none), in one pass."""
    params = list(model.parameters())
    with_grad = [i for i, p in enumerate(params) if p.grad is not None]
    norms: list[float | None] = [None] * len(params)
    if with_grad:
        values = torch.stack(torch._foreach_norm([params[i].grad for i in with_grad]))
        for i, value in zip(with_grad, values.double().tolist()):
            norms[i] = value
    return norms


def _to(tensor, device: str):
    return None if tensor is None else tensor.to(device, copy=True)
