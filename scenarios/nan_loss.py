"""nan_loss — the loss went NaN. Which of three changes did it?

Every cause is a change that looks harmless in the config (a warmup, length grouping, left
padding: each appears as a harmless decoy in other incidents) plus code that makes it harmful.
"""
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
    base={"data": "sft", "sft_lengths": "long_answers", "n_layer": 1, "d_model": 32,
          "n_head": 2, "optimizer": "adamw", "lr": 0.01, "batch_size": 32, "steps": 200},
    causes=(
        Cause(
            id="lr_too_high",
            title="The learning rate the optimizer uses is far too high",
            fault=Fault("a 5-step warmup, and the refactored scheduler ramps the lr up "
                        "exponentially by multiplying it in place (x 10^(1/5) every step, from "
                        "lr/10) and never stops after the warmup",
                        config={**WARMUP.config, "lr_update": "compounding_ramp"}),
            explanation=(
                "The config says lr 0.01, but the refactored warmup multiplied the optimizer's lr\n"
                "in place by 1.58 (10^(1/5)) every step and lost the check that ends the warmup:\n"
                "0.001 at step 0, 0.01 at step 5, 0.1 at step 10, 1 at step 15, 1e5 at step 40.\n"
                "Adam moves every weight by about the lr each step, whatever the size of the\n"
                "gradient, so once the lr passed a few tenths every step threw the weights further\n"
                "out: the loss climbed from step 12-14 to ~1e11 and the gradient norm to ~1e6,\n"
                "until around step 43 the activations (~1e20) overflowed fp32 when LayerNorm\n"
                "squared them: inf, then NaN. Clipping the gradient cannot help: Adam divides the\n"
                "gradient by its own running size, so the step is set by the lr alone. The log's\n"
                "lr column shows the lr actually used; the config only shows what was asked for."),
            tell="the log's lr column grows 1.58x every step, far past the configured 0.01; loss "
                 "and grad_norm climb for about 30 steps before the first NaN (near step 43)",
            changes=(WARMUP.log, SCHEDULER_CODE),
            signal=Tell("table (the lr column), plot grad_norm",
                        all_of(lr_climbs_past_config(5), grad_norm_climbs_before_nonfinite(10))),
            hints=('Read the log table (table) with its lr column, then plot grad_norm.',
                   'Compare the lr in the log with the lr in config.json, and check whether grad_norm and loss grow for several steps before the first NaN.')),
        Cause(
            id="empty_label_division",
            title="The loss divides by the number of supervised tokens without a guard",
            fault=Fault("length-grouped batching on, and loss = sum / count with no guard",
                        config={**GROUPING.config, "loss_mean": "count_as_is"}),
            explanation=(
                "Length-grouped batching put the longest prompts together. They fill the whole\n"
                "context, so truncation had cut off every response in those batches: zero\n"
                "supervised tokens, and the mean loss was 0 / 0 = NaN. No token contributed to\n"
                "the gradient, so it was exactly zero and the NaN never reached the weights: only\n"
                "those steps are NaN, and the ones around them are healthy."),
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
                "with -inf, softmax over an all -inf row is 0/0 = NaN. Those positions are padding,\n"
                "which the loss ignores, so the first step's loss is still finite; but the backward\n"
                "pass through softmax turns the NaN into NaN gradients, the first update writes\n"
                "NaN into every weight, and every step after is NaN."),
            tell="non-finite from step 0 (a finite loss but a NaN gradient norm) and at every "
                 "step after, with no growth before it; anomaly detection points at softmax; the "
                 "batch shows left padding",
            changes=(COLLATOR.log, MASKING_CODE),
            signal=Tell("table 0 3", nonfinite_throughout_from(2)),
            hints=('Look at the first few steps of the log table (table 0 3), then the batch at step 0 (batch 0) and the anomaly probe.',
                   'When does the first NaN appear, and does anything grow before it? Which side of each row is the padding on, and which op does the anomaly report name?')),
    ),
    fixes=(
        Fix("fix_scheduler", "Make the warmup ramp up to the configured lr, then hold it",
            config={"lr_update": "from_schedule"}),
        Fix("clip_grad", "Clip the global gradient norm at 1.0", config={"grad_clip": 1.0}),
        Fix("guard_division", "Divide the loss by max(count, 1)",
            config={"loss_mean": "count_at_least_one"}),
        Fix("finite_mask", "Fill masked scores with the dtype's minimum, not -inf",
            config={"attn_mask_value": "min"}),
        Fix("right_padding", "Pad on the right for training", config={"padding_side": "right"}),
        Fix("skip_nonfinite", "Skip optimizer steps whose loss or gradients are not finite",
            config={"skip_nonfinite": True}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.5391: word frequencies,
    # nothing of the grammar) to the entropy floor (0.9779), i.e. <= 1.759. Measured on seeds 0-9
    # (benchmarks/learning.py): healthy 1.32-1.64 (58-78% of the way); with length grouping (a
    # decoy, and the base of every empty_label_division re-run) 1.37-1.61; with lr=0.001, a run
    # that barely trains, 1.99-2.08 (seeds 0-2). AdamW, because SGD with momentum does not get
    # past word frequencies on this model within a budget of a second or so.
    criterion=Criterion(min_learnt=0.5, baselines=(0.9779, 2.5391)),
    resolves={
        "lr_too_high": ("fix_scheduler",),
        "empty_label_division": ("guard_division",),
        "fully_masked_row": ("finite_mask", "right_padding"),
    },
    masks={"empty_label_division": ("skip_nonfinite",)},
    code=("lr_update", "loss_mean"),
    recipe=("lr", "momentum", "weight_decay", "optimizer", "grad_clip", "warmup_steps",
            "schedule", "batch_size", "grad_accum_steps", "padding_side", "length_grouped",
            "skip_nonfinite", "precision", "loss_scale"),
    fixed=FIXED_REASONS,
    decoys=(WARMUP, GROUPING, COLLATOR, Change(SCHEDULER_CODE), Change(LOSS_CODE),
            Change(MASKING_CODE)),
    interview_question="Your training loss went NaN. What do you check, in what order?",
    debrief=(
        "Interview answer, in order of how cheap each check is:\n"
        "1. WHEN did it go NaN, and in what? From step 0 means the forward pass itself is\n"
        "   broken (masking, a log/division/sqrt of zero, bad input data); look at the\n"
        "   gradient norm too, since a NaN can hide in the gradients under a finite loss.\n"
        "   After a climb in loss and gradient norm means an optimisation blow-up (learning\n"
        "   rate, warmup, fp16 overflow): read the lr the optimizer actually used in the log,\n"
        "   not the one the config asked for. Isolated NaN steps with healthy steps around\n"
        "   them point at particular batches.\n"
        "2. WHERE? Run the failing step under torch.autograd.detect_anomaly to name the op,\n"
        "   and check the batch at that step: lengths, padding, labels, non-finite inputs.\n"
        "3. FIX the cause: a sane lr and schedule for blow-ups (with Adam, gradient clipping\n"
        "   does not shrink the step, the lr sets it; clipping helps against rare spikes);\n"
        "   log_softmax / a finite mask value / a guarded denominator for numeric bugs.\n"
        "Skipping NaN batches is a mitigation that hides the bug: say so if you propose it."),
)
