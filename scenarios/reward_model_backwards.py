"""reward_model_backwards — a reward model that ranks held-out pairs at or below chance, or by length.

A reward model learns from preference pairs with the pairwise ranking loss
-log sigmoid(r_chosen - r_rejected). Two causes are in the team's code (the collator's pair
layout, where the value head's reward is read), one is in the data (labels that follow length).
Each shows in the accuracy and margin curves or in the rewards by answer length (`rewards`).
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, summary_at_least, summary_at_most

WEIGHT_DECAY = Change("Set weight decay to 0.01 for the reward model", {"weight_decay": 0.01})
CLIP = Change("Clip gradients at norm 1.0", {"grad_clip": 1.0})
COLLATOR_CODE = "Switched to the shared preference collator"
HEAD_CODE = "Moved the value head's pooling into the model class"
DATA_CODE = "Rebuilt the preference pairs with the new labelling rules"

SCENARIO = Scenario(
    id="reward_model_backwards",
    title="The reward model ranks answers at chance, or backwards",
    difficulty="medium",
    tags=("rlhf", "reward-model", "alignment", "preferences", "data pipeline"),
    story=(
        "Before RLHF, your team trains a reward model: the team's small pretrained transformer\n"
        "with a value head, on preference pairs (a prompt, a chosen and a rejected answer;\n"
        "each row [BOS] prompt [SEP] answer [EOS], padded to a max_length of 16 tokens) with\n"
        "the pairwise ranking loss -log sigmoid(r_chosen - r_rejected). The rejected answers\n"
        "come from a weak model that repeats itself. Last month's reward model ranked about\n"
        "nine held-out pairs in ten the right way. This week's ranks them at chance, or\n"
        "backwards, or by how long the answer is. Held-out pairs are built by the grader's own\n"
        "pipeline, with answer lengths drawn independently of which answer is better. Find\n"
        "out why and fix the cause."),
    # The team's pretrained transformer (sim/pretrained.py) with a value head, 40 steps of 24
    # pairs at lr 1e-2, 4 warmup steps, cosine (about 0.5 s). Healthy held-out accuracy: keyed
    # incidents review-h 0-119 0.86-1.00, review-u 0-99 0.86-1.00; bare seeds 0-119 at least
    # 0.76 (5th percentile 0.88, median 0.95); on bare seeds 0-11 reward/length correlation
    # -0.16-0.12, no tied pairs. At lr 2e-2 with no warmup, full-size Adam steps from the first
    # one knocked some seeds off the pretrained start (60 or 80 steps did not bring all of
    # them back): keyed review-h 0.68-0.99, 2 of 120 under 0.7; bare as low as 0.64, 1 of 120.
    base={"model": "reward", "base_model": "pretrained", "data": "preferences", "seq_len": 16,
          "vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 24,
          "steps": 40, "lr": 1e-2, "warmup_steps": 4, "schedule": "cosine", "eval_every": 20},
    causes=(
        Cause(
            id="pairs_swapped",
            title="The collator puts the rejected answers where the loss expects the chosen",
            fault=Fault("the shared preference collator stacks the rejected rows first but "
                        "labels the first half chosen", config={"pair_order": "rejected_first"}),
            explanation=(
                "The shared collator stacked each batch's rejected answers first and its chosen\n"
                "answers second, while its labels (and the loss) take the first half as chosen.\n"
                "The model learnt exactly what it was told: to prefer the looping answers. The\n"
                "training loss falls and the accuracy on training batches climbs, because both\n"
                "are measured against the same swapped labels; only held-out pairs, built\n"
                "independently, show it ranks backwards (well below chance). Check one collated\n"
                "pair by eye, and keep a held-out set that does not go through the same code."),
            tell="training batches ranked right more and more often while held-out pairs are "
                 "ranked backwards (accuracy well below 0.5, margin negative)",
            changes=(COLLATOR_CODE,),
            signal=Tell("plot accuracy, plot eval_accuracy", all_of(
                summary_at_most("pref_accuracy", 0.4), summary_at_least("train_accuracy", 0.6),
                summary_at_most("length_corr", 0.5))),
            hints=("Compare the accuracy on training batches with the held-out one (plot "
                   "accuracy, plot eval_accuracy).",
                   "The model learns its training labels well. Which way round does it rank "
                   "held-out pairs? Read the collator (code).")),
        Cause(
            id="reward_at_padding",
            title="The reward is read at the last column of the padded row: a padding position",
            fault=Fault("the value head's pooling reads each row's reward at the batch's last "
                        "column; rows are padded to max_length, so it is always padding (where "
                        "the model outputs zero)", config={"reward_position": "last_column"}),
            explanation=(
                "The model zeroes its value at padding positions, and every row is shorter than\n"
                "max_length, so the last column is always padding: every reward is exactly 0.\n"
                "r_chosen - r_rejected = 0 for every pair, the loss sits at log 2 = 0.693 from\n"
                "the first step to the last, no gradient reaches the model, and held-out\n"
                "accuracy is exactly chance (every pair a tie). Read the reward at each row's\n"
                "last real token (from the attention mask: lengths - 1 with right padding), as\n"
                "HF's sequence-classification heads do; a loss pinned at 0.693 in a pairwise\n"
                "loss means the two rewards are equal."),
            tell="the loss stays at log 2 = 0.693 from start to end; every held-out reward is "
                 "exactly the same, so every pair ties (rewards)",
            changes=(HEAD_CODE,),
            signal=Tell("rewards", summary_at_least("tied_share", 0.9)),
            hints=("Look at the loss curve, then at the rewards themselves (rewards).",
                   "What does a pairwise loss of exactly 0.693 say about r_chosen and "
                   "r_rejected? Where in a row is the reward read (code)?")),
        Cause(
            id="length_labels",
            title="No length control: the new labels prefer the longer answer",
            fault=Fault("the rebuilt preference data labels the longer of two answers chosen, "
                        "looping or not", config={"pref_lengths": "chosen_longer"}),
            explanation=(
                "The new labelling rules preferred the longer answer whenever the two differed\n"
                "in length (verbosity bias, as human and AI judges show it), so length alone\n"
                "explains every training label while quality explains only some. The model\n"
                "learnt length: it ranks training pairs well, but its reward climbs with the\n"
                "answer's length whatever the answer says, and on held-out pairs whose rejected\n"
                "answer is the longer one it is almost always wrong. Control length in the data\n"
                "(pairs whose length difference does not predict the label), and always check\n"
                "reward against length before using a reward model for RLHF."),
            tell="held-out rewards climb with the answer's length (correlation above 0.6), and "
                 "pairs whose rejected answer is longer are ranked wrong (rewards)",
            changes=(DATA_CODE,),
            signal=Tell("rewards", all_of(summary_at_least("length_corr", 0.6),
                                          summary_at_most("accuracy_longer_rejected", 0.3))),
            hints=("Plot the held-out rewards against the answers' lengths (rewards).",
                   "Does the reward say how good an answer is, or how long? How were the "
                   "training labels decided?")),
    ),
    fixes=(
        Fix("chosen_first", "Lay out each pair chosen first, as the loss reads it",
            config={"pair_order": "chosen_first"}),
        Fix("reward_at_last_token", "Read each row's reward at its last real token",
            config={"reward_position": "last_real_token"}),
        Fix("length_controlled_data", "Rebuild the pairs with length-controlled labels",
            config={"pref_lengths": "balanced"}),
        Fix("train_longer", "Train the reward model half as long again (60 steps)",
            config={"steps": 60}),
    ),
    # Healthy (keyed incidents, see base): 0.86-1.00 of held-out pairs ranked right. Bare seeds
    # 0-5: pairs swapped 0.03-0.07 (training batches 0.94-0.97); reward read at padding exactly
    # 0.5 (all tied); labels that follow length 0.44-0.54 (reward/length correlation 0.88-0.95).
    # Keyed (review-c 0-39, each cause): swapped 0.01-0.18, padding 0.5, length 0.45-0.61; none
    # passes. Training 60 steps instead of 40 changes none of them.
    criterion=Criterion(min_pref_accuracy=0.7),
    resolves={
        "pairs_swapped": ("chosen_first",),
        "reward_at_padding": ("reward_at_last_token",),
        "length_labels": ("length_controlled_data",),
    },
    code=("pair_order", "reward_position"),
    recipe=("lr", "warmup_steps", "schedule", "weight_decay", "grad_clip", "optimizer"),
    fixed=FIXED_REASONS,
    decoys=(WEIGHT_DECAY, CLIP, Change(COLLATOR_CODE), Change(HEAD_CODE), Change(DATA_CODE)),
    evidence="eval_accuracy",
    interview_question="Your reward model's held-out accuracy is at chance, or it just prefers "
                       "longer answers. What do you check?",
    debrief=(
        "Interview answer: a reward model learns r(x, y) from pairs with the Bradley-Terry loss\n"
        "-log sigmoid(r_chosen - r_rejected); read its loss, its accuracy and its margin, on\n"
        "training batches and on held-out pairs, and plot reward against length.\n"
        "1. LOSS AT 0.693 (log 2), ACCURACY EXACTLY 0.5: the two rewards are equal. The reward\n"
        "   is read where nothing differs: a padding position, the prompt, a constant head.\n"
        "   Read it at the last real token (lengths from the attention mask).\n"
        "2. TRAINING ACCURACY HIGH, HELD-OUT BELOW CHANCE: the labels are flipped somewhere\n"
        "   (chosen and rejected swapped in the collator or the data). Look at one pair.\n"
        "3. HELD-OUT NEAR CHANCE, REWARD FOLLOWS LENGTH: the data rewards verbosity. Control\n"
        "   length in the data and the evaluation, and check reward vs length (and other cheap\n"
        "   features) before RLHF: a policy will exploit whatever the reward model learnt.\n"
        "Training longer or harder fixes none of these: the model learns what the pipeline\n"
        "tells it. Why it matters: RLHF (PPO) maximises this reward; DPO skips the explicit\n"
        "reward model but inherits the same data problems."),
)
