"""The doctor's rules: each a small function `log -> Finding | None`, grouped by what they
look at. A rule reads only the log (never a scenario's answers); its thresholds are constants
beside it and are quoted in its finding. Adding a rule: write the function, list it in its
module's RULES."""
from __future__ import annotations

from . import gradients, grad_reset, heldout, kl_anchor, learning_rate, loss_shape, memory, \
    nonfinite, stalled

RULES = (*nonfinite.RULES, *memory.RULES, *stalled.RULES, *heldout.RULES, *grad_reset.RULES,
         *gradients.RULES, *loss_shape.RULES, *learning_rate.RULES, *kl_anchor.RULES)
