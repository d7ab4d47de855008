"""rlhf_reward_hacking — RLHF whose reward-model score climbs while the answers get worse.

The team's pretrained transformer LM answers prompts of the toy language and is tuned by
policy gradient (REINFORCE with a whitened batch baseline) on the score of a learnt reward
model, minus a KL penalty to a frozen reference (`sim/rlhf.py`). The reward model is a proxy
with a flaw (its raters liked one word for its own sake); the gold reward is the language's real
quality (the share of grammatical tokens). Two code bugs take the KL anchor away (beta read
from a key the config does not have: 0; the reference loaded with assign=True shares the
policy's storage: the KL is always 0), one pushes the policy far too hard (the trainer's lr
setup multiplies the lr by ten). Each shows in the logged reward, KL, penalty, gold and lr
curves and in the samples.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import (Tell, all_of, logged_all_zero, lr_climbs_past_config,
                         summary_at_least)

EVAL = Change("Evaluate every 10 steps", {"eval_every": 10})
REFERENCE_CODE = "Loaded the reference model without an extra copy of the weights"
PENALTY_CODE = "Moved the KL coefficient into the shared trainer config"
SAMPLES = Change("Log eight of the policy's samples at the end of the run")
TRAINER_CODE = "Moved the optimizer's learning-rate setup into the shared trainer"

SCENARIO = Scenario(
    id="rlhf_reward_hacking",
    title="RLHF: the reward climbs while the answers get worse",
    difficulty="hard",
    tags=("rlhf", "ppo", "reward hacking", "kl penalty", "alignment", "reference model"),
    story=(
        "The team tunes its small pretrained language model with RLHF. Each step the policy\n"
        "answers 32 prompts (three words; the answer is the next eight tokens, sampled), the\n"
        "team's reward model scores each answer, and a policy gradient (REINFORCE with a\n"
        "baseline) pushes towards high-scoring answers. The reward is the score minus beta *\n"
        "KL(policy || reference), the KL estimated as the sampled tokens' summed\n"
        "log pi - log pi_ref, the reference being the model as tuning starts (beta 2, lr 5e-3,\n"
        "24 steps). Last month's run raised the score (from about 2 to about 5) while about half\n"
        "of the answers' tokens still followed the grammar, nearly as many as with the\n"
        "pretrained model, within 4.5 nats of KL from it. This week the score may climb\n"
        "far higher, but the answers are worse: fewer of their words follow the language, or\n"
        "the policy has moved far from where it started. The grader judges fresh answers to\n"
        "held-out prompts by the language's grammar itself. Find out why and fix it."),
    # The team's pretrained transformer (sim/pretrained.py) as policy, the team's reward model
    # (trained once, kept like the checkpoint), 24 steps of 32 rollouts at lr 5e-3, constant,
    # beta 2 (about 0.4 s).
    base={"model": "rlhf", "base_model": "pretrained", "data": "rollouts", "seq_len": 16,
          "vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 32,
          "steps": 24, "lr": 5e-3, "warmup_steps": 0, "schedule": "constant", "eval_every": 0,
          "rlhf_beta": 2.0},
    causes=(
        Cause(
            id="kl_penalty_off",
            title="The KL coefficient is read from a key the config does not have: beta is 0",
            fault=Fault("the reward shaping reads beta with getattr(config, 'kl_coef', 0.0); "
                        "the config calls it rlhf_beta, so beta is 0 and the KL is logged but "
                        "never subtracted", config={"rlhf_penalty": "beta_from_kl_coef"}),
            explanation=(
                "The reward shaping read beta as getattr(config, 'kl_coef', 0.0), but the\n"
                "config's field is rlhf_beta: the default 0 was used silently. The KL estimate\n"
                "was still computed and logged, so the KL curve climbs, but the penalty logged\n"
                "beside it is exactly 0 at every step: nothing pulls the policy back. With no\n"
                "anchor the policy maximises the proxy alone and finds what the reward model\n"
                "over-rates (its raters' favourite word, which the grammar never allows three\n"
                "times in a row): the score climbs far past a healthy run's while the gold\n"
                "reward collapses. Read config values by attribute (a typo then raises), and\n"
                "check that the logged penalty equals beta times the logged KL."),
            tell="the logged KL climbs to many nats while the logged KL penalty is exactly 0 at "
                 "every step (plot kl, plot kl_penalty)",
            changes=(PENALTY_CODE,),
            signal=Tell("plot kl, plot kl_penalty", all_of(
                logged_all_zero("kl_penalty"), summary_at_least("train_kl", 4.0))),
            hints=("Plot the KL and the penalty subtracted for it (plot kl, plot kl_penalty).",
                   "The KL is large: what is beta times the KL, and what did the loss "
                   "subtract? Where does the code read beta (code)?")),
        Cause(
            id="reference_not_frozen",
            title="The reference shares the policy's weights (loaded with assign=True)",
            fault=Fault("the reference is loaded with load_state_dict(policy.state_dict(), "
                        "assign=True): it holds the policy's own tensors, so every update of "
                        "the policy moves it too", config={"rlhf_reference": "assigned_weights"}),
            explanation=(
                "The reference was built as a model of its own but loaded with\n"
                "load_state_dict(policy.state_dict(), assign=True). state_dict() returns the\n"
                "policy's tensors themselves (detached, same storage), and assign=True makes\n"
                "them the reference's parameters instead of copying their values: the\n"
                "optimizer's in-place updates of the policy move the reference too. Every\n"
                "log pi - log pi_ref is exactly 0, so the KL and its penalty are exactly 0\n"
                "while the policy drifts as if beta were 0, into the reward model's blind spot.\n"
                "Copy the weights (load_state_dict without assign, or copy.deepcopy), freeze\n"
                "the copy, and check that the KL is 0 only at the first step."),
            tell="the logged KL to the reference is exactly 0 at every step while the policy "
                 "drifts far from the pretrained model (plot kl, rollouts)",
            changes=(REFERENCE_CODE,),
            signal=Tell("plot kl, rollouts", all_of(
                logged_all_zero("kl"), summary_at_least("kl_pretrained", 4.0))),
            hints=("Plot the KL to the reference (plot kl), then look at the answers "
                   "(rollouts).",
                   "A KL of exactly 0 means the policy and the reference give the same "
                   "probabilities. Has the policy not moved, or has the reference moved with "
                   "it? How is the reference made (code)?")),
        Cause(
            id="overoptimised",
            title="The policy's learning rate is ten times too high for the proxy",
            fault=Fault("the shared trainer's code that sets the optimizer's lr each step "
                        "multiplies the scheduled lr by ten (5e-2 instead of 5e-3): each update "
                        "jumps far past what a batch of rollouts and the KL penalty can hold",
                        config={"lr_update": "times_ten"}),
            explanation=(
                "The config says lr 5e-3, but the shared trainer's lr setup multiplied it by ten\n"
                "(the log's lr column shows 5e-2). The KL penalty acts only through the\n"
                "rollouts already sampled: it can pull back a step that went too far, not stop\n"
                "it. At ten times the usual lr every update jumps far from the reference (the\n"
                "logged KL and its penalty are several times a healthy run's from the first\n"
                "steps) and the policy ends far outside the KL budget, its grammar often broken:\n"
                "its score mostly no higher than a healthy run's, or it lands in the reward\n"
                "model's blind spot. This is why RLHF\n"
                "runs use small learning rates, PPO clips each update, and teams watch the KL:\n"
                "the reward model is only trustworthy close to the data it was trained on."),
            tell="the KL penalty is subtracted, yet the logged KL is several times a healthy "
                 "run's from the first steps; the log's lr is ten times the config's (plot kl, "
                 "plot lr)",
            changes=(TRAINER_CODE,),
            signal=Tell("plot kl, plot kl_penalty, plot lr", all_of(
                summary_at_least("train_kl", 4.0), summary_at_least("train_kl_penalty", 1.0),
                lr_climbs_past_config(5.0))),
            hints=("Plot the KL and its penalty, and the learning rate (plot kl, plot "
                   "kl_penalty, plot lr).",
                   "The penalty is applied, so the anchor works; why is the KL still large "
                   "from the first steps? How big is each update?")),
    ),
    fixes=(
        Fix("read_beta", "Read beta from the config's own field (config.rlhf_beta)",
            config={"rlhf_penalty": "beta_from_config"}),
        Fix("copy_reference", "Load the reference with a copy of the weights, frozen",
            config={"rlhf_reference": "loaded_copy"}),
        Fix("lr_as_configured", "Set the optimizer's lr from the schedule as configured",
            config={"lr_update": "from_schedule"}),
        Fix("lower_beta", "Lower beta to 0.5 so the KL penalty stops holding the reward back",
            config={"rlhf_beta": 0.5}),
    ),
    # Bare seeds 0-9 (10-15 in brackets, not tuned to): healthy gold 0.449-0.539 (0.465-0.521),
    # KL to the pretrained model 1.63-2.90 (2.28-3.23) nats, score 4.3-5.5; beta 0.5 (the trap)
    # gold 0.26-0.47 (0.31-0.48), KL 9.3-16.1 (10.0-14.0); lr times ten KL 7.5-26.8 (7.1-11.3),
    # gold 0.09-0.45 (0.24-0.83); beta read as 0 and the shared reference (the same numerics)
    # gold 0.05-0.10 (0.05-0.18), KL 25.6-27.4 (23.0-27.2), score 14.2-14.8. The pretrained
    # model's own answers: gold about 0.57. The reward model ranks 0.766 of held-out quality
    # pairs right (it is trained once for every seed).
    criterion=Criterion(min_gold_reward=0.4, max_kl_pretrained=4.5),
    resolves={
        "kl_penalty_off": ("read_beta",),
        "reference_not_frozen": ("copy_reference",),
        "overoptimised": ("lr_as_configured",),
    },
    harms=("lower_beta",),
    code=("rlhf_penalty", "rlhf_reference", "lr_update"),
    recipe=("lr", "warmup_steps", "schedule", "weight_decay", "grad_clip", "optimizer",
            "rlhf_beta"),
    fixed=FIXED_REASONS,
    decoys=(EVAL, SAMPLES, Change(REFERENCE_CODE), Change(PENALTY_CODE),
            Change(TRAINER_CODE)),
    evidence="gold_reward",
    interview_question="Your RLHF reward keeps climbing but the outputs get worse. Why is there "
                       "a KL term, why must the reference be frozen, and how do PPO and DPO "
                       "differ?",
    debrief=(
        "Interview answer: this is reward hacking (over-optimisation, Goodhart): the reward\n"
        "model is a proxy, trained on finite data, and a policy that maximises it finds where\n"
        "it is wrong. RLHF maximises E[r(x, y)] - beta * KL(pi || pi_ref): the KL term keeps the\n"
        "policy where the reward model was trained and the language stays fluent; the optimum\n"
        "is pi_ref * exp(r / beta) / Z, so beta trades reward against drift.\n"
        "1. KL CLIMBS, PENALTY EXACTLY 0: the penalty is not applied (beta 0, a config key\n"
        "   read with a default, the KL logged but never subtracted).\n"
        "2. KL EXACTLY 0 WHILE THE POLICY DRIFTS: the reference is not frozen (it shares the\n"
        "   policy's weights: a shallow copy, assign=True, a reference refreshed from the\n"
        "   policy). Freeze a separate copy; the KL is 0 only at the first step.\n"
        "3. PENALTY ON, KL LARGE FROM THE START: the optimisation is too aggressive (lr, too\n"
        "   many epochs per batch, too many steps). Small lr, PPO's clipped ratio, early\n"
        "   stopping on a KL budget.\n"
        "Track the reward, the KL, the penalty and a held-out gold signal (human or a stronger\n"
        "judge) together, and read samples. Lowering beta buys score with drift: it breaks a\n"
        "healthy run. PPO vs DPO: PPO samples from the policy, scores with a learnt reward\n"
        "model and optimises the KL-shaped reward with a clipped policy gradient (online, a\n"
        "value model, sampling); DPO skips the reward model and sampling and fits the same\n"
        "KL-regularised optimum directly on fixed preference pairs, beta and the frozen\n"
        "reference playing the same role. Both inherit the preference data's biases."),
)
