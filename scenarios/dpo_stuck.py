"""dpo_stuck — DPO whose loss sits at log 2 or barely moves, or that learns almost nothing.

The team's pretrained transformer LM is tuned with DPO on the preference pairs of
`sim/preferences.py` (a good answer against a weak model's looping one), with sequence log-probs
summed over the answer tokens, against a frozen reference (`sim/dpo.py`). Two code bugs change
where beta enters the loss (applied twice: far too small; dividing: far too large), one makes
the reference share the policy's weights (the log-ratios are always zero). Each shows in the
loss, the logged log-ratio curves and the held-out log-ratios (`logratios`).
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import (Tell, all_of, logged_logratios_zero, none_of, summary_at_least,
                         summary_at_most)

WEIGHT_DECAY = Change("Set weight decay to 0.01 for the DPO run", {"weight_decay": 0.01})
EVAL = Change("Evaluate every 20 steps", {"eval_every": 20})
REFERENCE_CODE = "Moved the reference model's setup into the trainer's constructor"
LOSS_CODE = "Rewrote the DPO loss so that it also returns the implicit rewards for logging"

SCENARIO = Scenario(
    id="dpo_stuck",
    title="DPO is stuck at log 2, barely moves, or learns almost nothing",
    difficulty="hard",
    tags=("rlhf", "dpo", "alignment", "preferences", "reference model"),
    story=(
        "The team tunes its small pretrained language model with DPO on preference pairs (a\n"
        "prompt, a chosen and a rejected answer; each row [BOS] prompt [SEP] answer [EOS],\n"
        "padded to 16 tokens). The rejected answers come from a weak model that repeats\n"
        "itself. The loss is -log sigmoid(beta * (ratio_chosen - ratio_rejected)), a ratio\n"
        "being log pi(answer | prompt) - log pi_ref(answer | prompt) summed over the answer's\n"
        "tokens, against a frozen reference (the model as training starts). Last month's run\n"
        "made the looping answers far less likely (a log-ratio of -30 nats or lower) and still\n"
        "predicted the words of good answers nearly as well (under 3.2 nats a word). This\n"
        "week's DPO loss sits at log 2, or stays high, or swings between 0 and several nats\n"
        "while the policy learns little; or the policy drifts and no longer predicts good\n"
        "answers. Held-out pairs are judged by the grader against the pretrained model\n"
        "itself. Find out why and fix it."),
    # The team's pretrained transformer (sim/pretrained.py), beta 0.2, 40 steps of 16 pairs at
    # lr 1.2e-2, cosine, no warmup (about 0.5 s).
    base={"model": "dpo", "base_model": "pretrained", "data": "preferences", "seq_len": 16,
          "vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 16,
          "steps": 40, "lr": 1.2e-2, "warmup_steps": 0, "schedule": "cosine", "eval_every": 0,
          "dpo_beta": 0.2},
    causes=(
        Cause(
            id="reference_is_policy",
            title="The reference model shares the policy's weights (not a frozen copy)",
            fault=Fault("the reference is made with copy.copy(policy): a shallow copy of a "
                        "module shares its parameters, so the reference moves with the policy",
                        config={"dpo_reference": "shallow_copy"}),
            explanation=(
                "The reference was made with copy.copy(policy). A shallow copy of an nn.Module\n"
                "shares the parameter tensors, so the 'reference' is the policy itself: every\n"
                "log-ratio log pi/pi_ref the loss computes is exactly 0 and the loss is exactly\n"
                "log 2 = 0.693 at every step. It is not a loss without gradient: the reference\n"
                "pass runs without gradient, so the policy still gets beta/2 * grad(log pi(y_w)\n"
                "- log pi(y_l)) at every step, with nothing that ever saturates it: there is no\n"
                "KL anchor left. Held-out, against the real pretrained model, the looping\n"
                "answers drop fast and the good answers lose likelihood too (the policy drifts).\n"
                "Make the reference a separate, frozen model (copy.deepcopy, requires_grad off,\n"
                "eval mode) and check that the log-ratios are exactly 0 only at the first step."),
            tell="the loss is exactly log 2 = 0.693 and the logged log-ratios of chosen and "
                 "rejected answers are exactly 0 at every step (plot chosen_logratio), while "
                 "held-out the policy has moved far (log-ratio margin 70+ nats) and predicts good "
                 "answers' words far worse (logratios)",
            changes=(REFERENCE_CODE,),
            signal=Tell("plot chosen_logratio, logratios", logged_logratios_zero),
            hints=("Plot the loss and the logged log-ratios (plot loss, plot chosen_logratio, "
                   "plot rejected_logratio).",
                   "A DPO loss of exactly 0.693 means the pair logit is 0. Is the policy "
                   "moving (logratios)? Then what is the reference (code)?")),
        Cause(
            id="beta_too_small",
            title="Beta is applied twice: the effective beta is beta squared, far too small",
            fault=Fault("the rewritten loss multiplies the log-ratios by beta for the implicit "
                        "rewards, then their difference by beta again (0.04 instead of 0.2)",
                        config={"dpo_scale": "beta_twice"}),
            explanation=(
                "The rewritten loss computed the implicit rewards beta * ratio for logging and\n"
                "then multiplied their difference by beta again: the pair logit was\n"
                "beta^2 * (ratio_chosen - ratio_rejected), an effective beta of 0.04. Beta is\n"
                "the strength of DPO's KL anchor: the loss stops pulling once beta * margin is\n"
                "a few units. With a tiny beta it never gets there: the loss falls slowly and\n"
                "stays high (~0.2) while the log-ratio margin keeps growing far past where a\n"
                "healthy run levels off (55+ nats held-out against about 30), and the policy\n"
                "drifts: its loss on the words of good answers rises from the pretrained model's\n"
                "1.7 nats to 3.4-4.0 (a healthy run: 2.7-3.0). Write the logit as in the paper\n"
                "(beta once), and read the log-ratios, not just the loss."),
            tell="the loss stays high (~0.2 at the end) and the logged implicit-reward margin "
                 "small (under 4) although the logged log-ratio margin is large (30+ nats) and "
                 "growing; held-out, the good answers' words are predicted far worse (logratios)",
            changes=(LOSS_CODE,),
            signal=Tell("plot loss, plot chosen_logratio, logratios", all_of(
                summary_at_most("train_margin", 4), summary_at_least("train_logratio_margin", 30),
                none_of(logged_logratios_zero))),
            hints=("Plot the loss against the logged log-ratios (plot loss, plot "
                   "chosen_logratio, plot rejected_logratio).",
                   "The margin is tens of nats, yet the loss is still far from 0: how big is "
                   "the pair logit for that margin? Where does beta enter the loss (code)?")),
        Cause(
            id="beta_too_large",
            title="Beta divides the log-ratios: the effective beta is 1/beta, far too large",
            fault=Fault("the rewritten loss divides the log-ratios by beta (as if it were a "
                        "temperature): an effective beta of 5 instead of 0.2",
                        config={"dpo_scale": "beta_divides"}),
            explanation=(
                "The rewritten loss divided the log-ratios by beta, as if beta were a softmax\n"
                "temperature: an effective beta of 1/0.2 = 5. A large beta is a strong KL anchor:\n"
                "a margin of one nat already makes the pair logit 5. Pairs ranked the right way\n"
                "cost almost nothing and their gradient (weighted by sigmoid(-logit)) vanishes;\n"
                "a pair ranked the wrong way costs five times its margin, so the loss swings\n"
                "between 0 and several nats from batch to batch. The policy stops close to\n"
                "where it started: the logged implicit-reward margin is huge, but held-out the\n"
                "looping answers are only about half as far down as a healthy run pushes them.\n"
                "Beta multiplies the log-ratio (implicit reward r = beta * log pi/pi_ref);\n"
                "typical values are 0.01-0.5."),
            tell="the logged implicit-reward margin is huge (20+) while the log-ratio margin "
                 "stays small (held-out under 23 nats, about half a healthy run's) (plot margin, "
                 "logratios)",
            changes=(LOSS_CODE,),
            signal=Tell("plot margin, logratios", all_of(
                summary_at_least("train_margin", 20), summary_at_most("logratio_margin", 23))),
            hints=("Compare the implicit-reward margin with how far the log-ratios moved "
                   "(plot margin, plot rejected_logratio, logratios).",
                   "The implicit-reward margin is huge but the looping answers are only a "
                   "little less likely than before: what makes a small log-ratio margin a large "
                   "logit? Where does beta enter the loss (code)?")),
    ),
    fixes=(
        Fix("frozen_reference", "Make the reference a separate frozen copy of the policy",
            config={"dpo_reference": "deep_copy"}),
        Fix("beta_once", "Write the pair logit as beta * (ratio_chosen - ratio_rejected)",
            config={"dpo_scale": "beta_on_margin"}),
        Fix("train_longer", "Train half as long again (60 steps)", config={"steps": 60}),
    ),
    # Measured on seeds 0-5 (bare, and incidents of key unseen-x): see the README's note.
    criterion=Criterion(min_pref_accuracy=0.9, max_word_loss=3.2, max_rejected_logratio=-28.0),
    resolves={
        "reference_is_policy": ("frozen_reference",),
        "beta_too_small": ("beta_once",),
        "beta_too_large": ("beta_once",),
    },
    code=("dpo_reference", "dpo_scale"),
    recipe=("lr", "warmup_steps", "schedule", "weight_decay", "grad_clip", "optimizer",
            "dpo_beta"),
    fixed=FIXED_REASONS,
    decoys=(WEIGHT_DECAY, EVAL, Change(REFERENCE_CODE), Change(LOSS_CODE)),
    evidence="chosen_logratio",
    interview_question="Your DPO loss sits at log 2, or your policy drifts. Why does DPO need a "
                       "frozen reference, what does beta do, and how does DPO differ from PPO?",
    debrief=(
        "Interview answer: DPO solves the KL-regularised RLHF objective in closed form. The\n"
        "optimal policy is pi* = pi_ref * exp(r / beta) / Z, so r = beta * log(pi / pi_ref) +\n"
        "const: the log-ratio to a frozen reference IS the reward, and the Bradley-Terry loss\n"
        "on it, -log sigmoid(beta * (ratio_w - ratio_l)), trains the policy directly.\n"
        "1. LOSS EXACTLY 0.693, LOG-RATIOS EXACTLY 0: the reference is the policy (a shared\n"
        "   module, a shallow copy, a reference pass through the same weights). With no anchor\n"
        "   the policy drifts. Freeze a separate copy (or precompute its log-probs).\n"
        "2. LOSS STAYS HIGH WHILE THE MARGIN GROWS: beta too small; the anchor is weak and the\n"
        "   policy keeps pushing, the good answers' likelihood falls too (drift).\n"
        "3. LOSS 0 ON SOME BATCHES, SPIKES ON OTHERS, SMALL MARGIN: beta too large; the anchor\n"
        "   holds the policy near the reference. Log the chosen and rejected log-ratios, the\n"
        "   implicit-reward margin and accuracy, not just the loss.\n"
        "PPO vs DPO: PPO learns a reward model, samples from the policy and optimises the\n"
        "reward minus beta * KL with a clipped policy gradient (online, needs a value model\n"
        "and sampling); DPO is offline and supervised on fixed pairs with no reward model or\n"
        "sampling, but beta and the frozen reference play the same role as PPO's KL term.\n"
        "Even a healthy run lowers the chosen answers' likelihood somewhat (both log-ratios\n"
        "fall, the rejected far more): watch how far, not only the sign. Leaving the prompt in\n"
        "summed log-probs changes nothing: it cancels between the two answers (not so with\n"
        "length-normalised log-probs). Training longer fixes none of these; a smaller lr only\n"
        "slows the drift."),
)
