"""nan_loss — the loss went NaN. Which of four things did it?"""
from ..sim.team_code import UnsafeTokenMean
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, grad_norm_climbs_before_nonfinite, isolated_nonfinite, \
    nonfinite_from_step

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
    base={"data": "sft", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
          "attn_mask_value": "-inf", "steps": 40},
    causes=(
        Cause(
            id="lr_too_high",
            title="The learning rate is far too high for this optimizer",
            fault=Fault("lr raised thirtyfold, from 0.1 to 3.0", config={"lr": 3.0}),
            explanation=(
                "Every SGD step overshot the minimum and landed somewhere steeper, so the gradient\n"
                "norm grew by orders of magnitude each step until values overflowed to inf and\n"
                "then NaN (inf - inf). The loss was finite for the first steps: it exploded."),
            tell="grad_norm and loss climb for several steps before the first NaN; "
                 "update/param ratio far above 1e-2",
            changes=("Tuned the learning rate to train faster",),
            signal=Tell("plot grad_norm", grad_norm_climbs_before_nonfinite(10))),
        Cause(
            id="empty_label_division",
            title="The loss divides by the number of supervised tokens without a guard",
            fault=Fault("length-grouped batching on, and loss = sum / count with no guard",
                        config={"length_grouped": True}, callbacks=(UnsafeTokenMean,)),
            explanation=(
                "Length-grouped batching put the longest prompts together. Truncation had cut off\n"
                "every response in that batch, so it had zero supervised tokens and the mean loss\n"
                "was 0 / 0 = NaN. Only those steps are NaN; the ones around them are healthy."),
            tell="isolated NaN steps with a healthy loss around them; the batch at that step "
                 "has zero supervised tokens",
            changes=("Group batches by length to cut padding",
                     "Refactored the loss computation"),
            signal=Tell("table, then batch STEP", isolated_nonfinite)),
        Cause(
            id="fully_masked_row",
            title="Some attention rows mask every key, so softmax sees only -inf",
            fault=Fault("padding moved to the left (the generation collator reused for "
                        "training), with the mask filled with -inf",
                        config={"padding_side": "left"}),
            explanation=(
                "With left padding, a padding query at the start of a row may attend to nothing:\n"
                "its causal window holds only padding, which the key-padding mask removes. Filled\n"
                "with -inf, softmax over an all -inf row is 0/0 = NaN, and the NaN spreads through\n"
                "the value mixing of the next layer. It happens on the first forward pass."),
            tell="NaN from step 0 with no growth before it; anomaly detection points at softmax; "
                 "the batch shows left padding",
            changes=("Use the generation collator for training too",),
            signal=Tell("table 0 2", nonfinite_from_step(0))),
    ),
    fixes=(
        Fix("lower_lr", "Lower the learning rate to 0.1", config={"lr": 0.1}),
        Fix("clip_grad", "Clip the global gradient norm at 1.0", config={"grad_clip": 1.0}),
        Fix("warmup", "Add a 10-step learning-rate warmup", config={"warmup_steps": 10}),
        Fix("guard_division", "Divide the loss by max(count, 1)", repairs=(UnsafeTokenMean,)),
        Fix("finite_mask", "Fill masked scores with the dtype's minimum, not -inf",
            config={"attn_mask_value": "min"}),
        Fix("right_padding", "Pad on the right for training", config={"padding_side": "right"}),
        Fix("skip_nonfinite", "Skip optimizer steps whose loss or gradients are not finite",
            config={"skip_nonfinite": True}),
    ),
    criterion=Criterion(max_eval_loss=2.7),
    resolves={
        "lr_too_high": ("lower_lr",),
        "empty_label_division": ("guard_division",),
        "fully_masked_row": ("finite_mask", "right_padding"),
    },
    masks={"empty_label_division": ("skip_nonfinite",)},
    recipe=("lr", "momentum", "weight_decay", "optimizer", "grad_clip", "warmup_steps",
            "schedule", "batch_size", "grad_accum_steps", "padding_side", "length_grouped",
            "skip_nonfinite", "precision", "loss_scale"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 10 steps", {"eval_every": 10}),
        Change("Refactored the loss computation"),
        Change("Refactored the attention masking"),
        Change("Refactored the learning-rate scheduler"),
    ),
    interview_question="Your training loss went NaN. What do you check, in what order?",
    debrief=(
        "Interview answer, in order of how cheap each check is:\n"
        "1. WHEN did it go NaN? From step 0 means the forward pass itself is broken (masking,\n"
        "   a log/division/sqrt of zero, bad input data). After a climb in loss and gradient\n"
        "   norm means an optimisation blow-up (learning rate, missing warmup or clipping,\n"
        "   fp16 overflow). Isolated NaN steps with healthy steps around them point at\n"
        "   particular batches.\n"
        "2. WHERE? Run the failing step under torch.autograd.detect_anomaly to name the op,\n"
        "   and check the batch at that step: lengths, padding, labels, non-finite inputs.\n"
        "3. FIX the cause: lower the LR / add clipping and warmup for blow-ups; use\n"
        "   log_softmax / a finite mask value / a guarded denominator for numeric bugs.\n"
        "Skipping NaN batches is a mitigation that hides the bug: say so if you propose it."),
)
