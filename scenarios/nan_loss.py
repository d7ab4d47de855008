"""nan_loss — the loss went NaN. Which of three changes did it?

Every cause is a change that looks harmless in the config (a warmup, length grouping, left
padding: each appears as a harmless decoy in other incidents) plus code that makes it harmful.
"""
from ..sim.team_code import CompoundingWarmup, UnsafeTokenMean
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, grad_norm_climbs_before_nonfinite, isolated_nonfinite, \
    lr_climbs_past_config, nonfinite_throughout_from

WARMUP = Change("Add a 5-step learning-rate warmup", {"warmup_steps": 5})
GROUPING = Change("Group batches by length to cut padding", {"length_grouped": True})
COLLATOR = Change("Use the generation collator for training too", {"padding_side": "left"})
SCHEDULER_CODE = "Refactored the learning-rate scheduler"
LOSS_CODE = "Refactored the loss computation"
MASKING_CODE = "Refactored the attention masking"

SCENARIO = Scenario(
    id="nan_loss",
    title="The loss went NaN",
    difficulty="easy",
    tags=("numerics", "sft", "attention", "optimizer"),
    story=(
        "Your teammate fine-tunes a small transformer on prompt/response pairs (SFT: only the\n"
        "response tokens are supervised). Last week's run was fine. This week's run prints NaN\n"
        "for the loss. They changed 'a couple of things to make it faster' and don't remember\n"
        "which. The model, the optimizer family and the data source are the same.\n"
        "Find out why the loss is NaN and fix the cause, not the symptom."),
    base={"data": "sft", "n_layer": 1, "d_model": 32, "n_head": 2, "optimizer": "adamw",
          "lr": 0.01, "batch_size": 32, "steps": 200},
    causes=(
        Cause(
            id="lr_too_high",
            title="The learning rate the optimizer uses is far too high",
            fault=Fault("a 5-step warmup, and the refactored scheduler multiplies the lr by the "
                        "step number (lr * (step + 1)) instead of ramping up to it",
                        config=WARMUP.config, callbacks=(CompoundingWarmup,)),
            explanation=(
                "The config says lr 0.1, but the refactored scheduler multiplied it by the step\n"
                "number: 0.1, 0.2, 0.3, ... 2.0 by step 19. Past about 1.0 every SGD step\n"
                "overshot the minimum and landed somewhere steeper, so the gradient norm grew by\n"
                "orders of magnitude until values overflowed to inf and then NaN (inf - inf).\n"
                "The loss was finite for the first twenty steps: it exploded. The log's lr column\n"
                "shows the lr actually used; the config only shows what was asked for."),
            tell="the log's lr column climbs every step, far past the configured 0.1; grad_norm "
                 "and loss climb for several steps before the first NaN",
            changes=(WARMUP.log, SCHEDULER_CODE),
            signal=Tell("table (the lr column), plot grad_norm",
                        all_of(lr_climbs_past_config(5), grad_norm_climbs_before_nonfinite(10))),
            hints=('Read the log table (table) with its lr column, then plot grad_norm.',
                   'Compare the lr in the log with the lr in config.json, and check whether grad_norm and loss grow for several steps before the first NaN.')),
        Cause(
            id="empty_label_division",
            title="The loss divides by the number of supervised tokens without a guard",
            fault=Fault("length-grouped batching on, and loss = sum / count with no guard",
                        config=GROUPING.config, callbacks=(UnsafeTokenMean,)),
            explanation=(
                "Length-grouped batching put the longest prompts together. Truncation had cut off\n"
                "every response in that batch, so it had zero supervised tokens and the mean loss\n"
                "was 0 / 0 = NaN. Only those steps are NaN; the ones around them are healthy."),
            tell="isolated NaN steps with a healthy loss around them; the batch at that step "
                 "has zero supervised tokens",
            changes=(GROUPING.log, LOSS_CODE),
            signal=Tell("table, then batch STEP", isolated_nonfinite),
            hints=('Find the NaN steps in the log table (table), then inspect the batch of one of them (batch STEP).',
                   "Are the steps around each NaN healthy? In a NaN step's batch, count the tokens that carry a label.")),
        Cause(
            id="fully_masked_row",
            title="Some attention rows mask every key, so softmax sees only -inf",
            fault=Fault("padding moved to the left (the generation collator reused for "
                        "training), and the refactored masking fills with -inf",
                        config={**COLLATOR.config, "attn_mask_value": "-inf"}),
            explanation=(
                "With left padding, a padding query at the start of a row may attend to nothing:\n"
                "its causal window holds only padding, which the key-padding mask removes. Filled\n"
                "with -inf, softmax over an all -inf row is 0/0 = NaN, and the NaN spreads through\n"
                "the value mixing of the next layer. It happens on the first forward pass."),
            tell="NaN from the first steps (the first batch with left padding) and at every "
                 "step after, with no growth before it; anomaly detection points at softmax; the "
                 "batch shows left padding",
            changes=(COLLATOR.log, MASKING_CODE),
            signal=Tell("table 0 3", nonfinite_throughout_from(2)),
            hints=('Look at the first few steps of the log table (table 0 3), then the batch at step 0 (batch 0) and the anomaly probe.',
                   'When does the first NaN appear, and does anything grow before it? Which side of each row is the padding on, and which op does the anomaly report name?')),
    ),
    fixes=(
        Fix("fix_scheduler", "Make the warmup ramp up to the configured lr, then hold it",
            repairs=(CompoundingWarmup,)),
        Fix("clip_grad", "Clip the global gradient norm at 1.0", config={"grad_clip": 1.0}),
        Fix("guard_division", "Divide the loss by max(count, 1)", repairs=(UnsafeTokenMean,)),
        Fix("finite_mask", "Fill masked scores with the dtype's minimum, not -inf",
            config={"attn_mask_value": "min"}),
        Fix("right_padding", "Pad on the right for training", config={"padding_side": "right"}),
        Fix("skip_nonfinite", "Skip optimizer steps whose loss or gradients are not finite",
            config={"skip_nonfinite": True}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.5392: word frequencies,
    # nothing of the grammar) to the entropy floor (0.9779), i.e. <= 1.759 (TODO numbers).
    criterion=Criterion(min_learnt=0.5, baselines=(0.9779, 2.5392)),
    resolves={
        "lr_too_high": ("fix_scheduler",),
        "empty_label_division": ("guard_division",),
        "fully_masked_row": ("finite_mask", "right_padding"),
    },
    masks={"empty_label_division": ("skip_nonfinite",)},
    recipe=("lr", "momentum", "weight_decay", "optimizer", "grad_clip", "warmup_steps",
            "schedule", "batch_size", "grad_accum_steps", "padding_side", "length_grouped",
            "skip_nonfinite", "precision", "loss_scale"),
    fixed=FIXED_REASONS,
    decoys=(WARMUP, GROUPING, COLLATOR, Change(SCHEDULER_CODE), Change(LOSS_CODE),
            Change(MASKING_CODE)),
    interview_question="Your training loss went NaN. What do you check, in what order?",
    debrief=(
        "Interview answer, in order of how cheap each check is:\n"
        "1. WHEN did it go NaN? From step 0 means the forward pass itself is broken (masking,\n"
        "   a log/division/sqrt of zero, bad input data). After a climb in loss and gradient\n"
        "   norm means an optimisation blow-up (learning rate, missing warmup or clipping,\n"
        "   fp16 overflow): read the lr the optimizer actually used in the log, not the one\n"
        "   the config asked for. Isolated NaN steps with healthy steps around them point at\n"
        "   particular batches.\n"
        "2. WHERE? Run the failing step under torch.autograd.detect_anomaly to name the op,\n"
        "   and check the batch at that step: lengths, padding, labels, non-finite inputs.\n"
        "3. FIX the cause: lower the LR / add clipping and warmup for blow-ups; use\n"
        "   log_softmax / a finite mask value / a guarded denominator for numeric bugs.\n"
        "Skipping NaN batches is a mitigation that hides the bug: say so if you propose it."),
)
