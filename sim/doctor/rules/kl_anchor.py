"""RLHF's anchor: the KL of the policy to its reference and the penalty paid for it, where a
log has them (debugsim's kl and kl_penalty; TRL's objective/kl and non_score_reward).

A penalty of exactly 0 while the KL is not: nothing holds the policy back (beta is 0). A KL of
exactly 0 at every step while the weights move: the reference moves with the policy. A KL far
past a usual budget although the penalty is paid: the updates are too big for it."""
from __future__ import annotations

from ..findings import Finding
from ._stats import fmt, median

MIN_STEPS = 5           # a judgement needs this many logged steps with a KL
KL_MOVED = 0.5          # nats: a KL this large means the policy left the reference
KL_BUDGET = 6.0         # nats per answer: past this over the run's second half, the policy has
                        # run far from where the reward model can be trusted
TRAINS = ("rlhf_reward_hacking",)


def kl_penalty_missing(log) -> Finding | None:
    kl, penalty = log.finite("kl"), log.finite("kl_penalty")
    if len(kl) < MIN_STEPS or len(penalty) < MIN_STEPS or any(v != 0 for _, v in penalty):
        return None
    step, top = max(kl, key=lambda point: point[1])
    if top < KL_MOVED:
        return None
    return Finding(
        "kl_penalty_missing", "kl_penalty_missing",
        f"the KL to the reference reaches {fmt(top)} nats (step {step}) while the KL penalty is "
        f"exactly 0 at all {len(penalty)} logged steps: nothing pulls the policy back",
        f"steps {kl[0][0]}-{kl[-1][0]}", 0.9,
        f"a penalty of exactly 0 at every one of >= {MIN_STEPS} logged steps while the KL "
        f"reaches >= {KL_MOVED:g} nats",
        ("beta (the KL coefficient) is 0: read from a config key that does not exist, with a "
         "default of 0, or left at 0 on purpose",
         "the KL is computed and logged but never subtracted from the reward"),
        ("print beta as the reward shaping reads it, and check penalty == beta * KL in the log",
         "read the samples: a policy without its anchor drifts towards what the reward model "
         "over-rates"),
        TRAINS, "failure")


def kl_stuck_at_zero(log) -> Finding | None:
    kl = log.finite("kl")
    if len(kl) < MIN_STEPS or any(v != 0 for _, v in kl):
        return None
    moving = [v for _, v in log.finite("update_ratio") if v > 0]
    reward = [v for _, v in log.finite("reward")]
    if not moving and len(set(reward)) < 2:
        return None               # nothing says the policy moved
    evidence = (f"the weights move at {len(moving)} steps (update ratio > 0)" if moving else
                f"the reward changes ({fmt(reward[0])} -> {fmt(reward[-1])})")
    return Finding(
        "kl_stuck_at_zero", "reference_not_frozen",
        f"the KL to the reference is exactly 0 at all {len(kl)} logged steps while {evidence}: "
        "the reference gives the policy's probabilities, so it moves with the policy",
        f"steps {kl[0][0]}-{kl[-1][0]}", 0.9,
        f"a KL of exactly 0 at every one of >= {MIN_STEPS} logged steps while the weights move",
        ("the reference shares the policy's weights: the same module, a shallow copy, "
         "load_state_dict(..., assign=True) from the policy's own state_dict",
         "a reference refreshed from the policy every step"),
        ("check that the reference's and the policy's first weight tensor do not share "
         "storage (data_ptr), and that the KL is 0 only before the first update",
         "compare samples now with the model's before tuning"),
        TRAINS, "failure")


def kl_past_budget(log) -> Finding | None:
    kl, penalty = log.finite("kl"), log.finite("kl_penalty")
    if len(kl) < MIN_STEPS or not any(v != 0 for _, v in penalty):
        return None
    second_half = [v for _, v in kl[len(kl) // 2:]]
    level = median(second_half)
    if level < KL_BUDGET:
        return None
    return Finding(
        "kl_past_budget", "kl_runaway",
        f"the KL to the reference sits at a median {fmt(level)} nats over the second half of the "
        f"run (up to {fmt(max(v for _, v in kl))}), although its penalty is paid",
        f"steps {kl[len(kl) // 2][0]}-{kl[-1][0]}", 0.6,
        f"the KL's median over the run's second half >= {KL_BUDGET:g} nats per answer (a "
        "convention: how far from the reference a reward model stays trustworthy depends on "
        "the task and the answer length)",
        ("updates too big for the anchor: an lr too high (read the log's lr against the "
         "config's), too many epochs over each batch of rollouts, no clipped ratio",
         "beta too small for this reward model"),
        ("read the lr the optimizer used and the size of each update",
         "watch a held-out quality signal and samples: the proxy reward is not to be trusted "
         "this far from the reference"),
        TRAINS, "instability")


RULES = (kl_penalty_missing, kl_stuck_at_zero, kl_past_budget)
