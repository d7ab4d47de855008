"""Nothing moves: gradients that are exactly zero, or weights that never change although
gradients arrive (the optimizer does not hold the parameters that get them)."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt

STALLED = 0.9           # exactly zero at >= 90% of the logged steps
MIN_POINTS = 8


def no_gradient(log) -> Finding | None:
    points = log.finite("grad_norm")
    if len(points) < MIN_POINTS:
        return None
    zero = [s for s, v in points if v == 0.0]
    if len(zero) < STALLED * len(points):
        return None
    return Finding(
        "no_gradient", "no_gradient",
        f"the gradient norm is exactly 0 at {len(zero)} of {len(points)} logged steps: no "
        "gradient reaches the trainable parameters, so nothing can learn",
        f"steps {points[0][0]}-{points[-1][0]}", 0.9,
        f"grad norm exactly 0 at >= {STALLED:.0%} of the steps",
        ("every trainable parameter sits behind a zero: LoRA's A and B both initialised to "
         "zero (B·A then has no gradient path to either)",
         "the loss does not depend on the trainable parameters: a .detach() or no_grad in the "
         "forward, an adapter that is not on the forward path",
         "every parameter frozen (requires_grad=False), the norm logged as 0"),
        ("after one backward, print each trainable parameter's .grad norm: which are None or 0?",
         "LoRA: A is initialised like a linear layer's weight and B at zero, never both at zero",
         "check that the trainable modules are used in the forward"),
        ("lora_wont_learn",), "failure")


def not_updated(log) -> Finding | None:
    ratios = log.finite("update_ratio")
    if len(ratios) < MIN_POINTS:
        return None
    grads = dict(log.finite("grad_norm"))
    zero = [s for s, v in ratios if v == 0.0]
    moving = [s for s in zero if grads.get(s, 0.0) > 0]
    if len(zero) < STALLED * len(ratios) or len(moving) < STALLED * len(zero):
        return None                   # updates happen, or there is no gradient (no_gradient)
    first, last = grads[moving[0]], grads[moving[-1]]
    lr = [v for _, v in log.finite("lr")]
    lr_zero = bool(lr) and max(lr) == 0.0
    return Finding(
        "not_updated", "params_not_updated",
        f"the weights never move (update/weight ratio exactly 0 at {len(zero)} of "
        f"{len(ratios)} steps) although gradients arrive (grad norm {fmt(first)} -> "
        f"{fmt(last)}" + ("; they pile up: nothing clears what no optimizer steps"
                          if last > 2 * first else "") + ")"
        + ("; the lr is 0 throughout" if lr_zero else ""),
        f"steps {ratios[0][0]}-{ratios[-1][0]}", 0.9,
        f"update ratio exactly 0 at >= {STALLED:.0%} of the steps while the grad norm is > 0",
        (("the learning rate is 0 (a schedule or a scale that zeroes it)",) if lr_zero else ())
        + ("the parameters that get gradients are not in the optimizer: its parameter list was "
           "collected before the adapters were added or the model was wrapped",
           "the optimizer holds only frozen parameters (PEFT's trainable count looks right; "
           "what counts is what the optimizer holds)"),
        ("compare the optimizer's param_groups with the parameters that have "
         "requires_grad=True and a .grad (by id)", "print the lr the optimizer actually uses",
         "build the optimizer after wrapping and freezing the model"),
        ("lora_wont_learn",), "failure")


RULES = (no_gradient, not_updated)
