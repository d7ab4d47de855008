"""loss_fluctuates — the loss swings, spikes and ends where it started. Every cause is the team's
training code (the update step in `sim/loop.py`, the per-process batch in `sim/data.py`), so
config.json is the same for all of them; the code probe shows the functions that ran.

Measured at this scale (AdamW, the window MLP, 60 steps; the recipe now trains 80): gradient
accumulation that sums instead of averaging changes nothing under Adam (it divides the scale
out), a data order sorted by source or repeating a small shard does not hurt a model this small,
SGD does not learn this model in 60 steps at all, and clipping after the optimizer step
matters only at the edge of instability, where healthy runs are unreliable too. The three causes below are the ones that
really break it, on every draw.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, first_batch_smaller_than_config, grad_norm_ramps, \
    grad_norm_sawtooth

STEP_CODE = "Refactored the training step into small functions"
LAUNCH_CODE = "Moved the data loader onto the shared launch template"
OPTIMIZER_CODE = "Refactored the optimizer setup"

SCENARIO = Scenario(
    id="loss_fluctuates",
    title="The loss swings and will not settle",
    difficulty="medium",
    tags=("loss fluctuation", "zero_grad", "batch size", "training loop"),
    story=(
        "Your team trains a small MLP language model with an aggressive recipe: AdamW at lr\n"
        "0.1, no clipping, 32 sequences per step, 80 steps. Tuned that way it reached a\n"
        "held-out loss well below word frequencies with a calm loss curve. After a round of\n"
        "refactoring the loss now jumps and swings, and learns less or nothing. config.json\n"
        "is unchanged. Find out why and fix the cause, not the symptom."),
    # 80 steps, not 60: at 60 a tenth of learners' healthy draws swung as much as the batch of
    # 4 (see the criterion). Measured on 40 keyed incidents (review-h-0..39, seeds 1000-1039):
    # healthy 0.66-0.88 of the way from the unigram baseline to the floor, loss swing
    # 0.031-0.057; the per-process batch of 4: 0.35-0.67, swing 0.095-0.17.
    base={"model": "mlp", "d_model": 16, "optimizer": "adamw", "lr": 0.1,
          "warmup_steps": 5, "schedule": "cosine", "batch_size": 32, "steps": 80},
    causes=(
        Cause(
            id="zero_grad_missing",
            title="Gradients are never cleared: each step adds to all the previous ones",
            fault=Fault("the refactored gradient reset calls detach_() on each .grad, which "
                        "leaves its values in place", config={"grad_reset": "grads_detached"}),
            explanation=(
                "After each optimizer step the refactored reset calls `.detach_()` on every\n"
                "gradient. That cuts the tensor from any graph; it does not zero it. So each\n"
                "backward adds its gradient onto the sum of all the earlier ones: the logged\n"
                "gradient norm climbs step after step (to 50-400 times where it started),\n"
                "and every update follows the accumulated direction of old batches rather than\n"
                "the current one. The model overshoots and swings, the loss spikes by up to\n"
                "several nats, and it ends at word frequencies or worse. Clipping would cap\n"
                "the size of the sum, not its staleness."),
            tell="the logged gradient norm climbs and stays high: every one of the last 10 "
                 "steps is at least 20x step 0's (a healthy run settles back near where it "
                 "started); the loss spikes and ends near the unigram baseline",
            changes=(STEP_CODE,),
            signal=Tell("plot grad_norm", grad_norm_ramps(20.0)),
            hints=("Plot the gradient norm (plot grad_norm), then read the update step "
                   "(code).",
                   "Does the gradient norm settle back after the early spike, or keep growing? "
                   "What happens to a .grad between one step and the next?")),
        Cause(
            id="grads_cleared_every_4th_step",
            title="Gradients are cleared only every 4th step: three steps in four add to the "
                  "old ones",
            fault=Fault("the refactored gradient reset clears the gradients only at the end of "
                        "the launch template's 4-step accumulation window, while the optimizer "
                        "steps every step", config={"grad_reset": "after_accumulation"}),
            explanation=(
                "The refactored reset copies the launch template's gradient accumulation: clear\n"
                "the gradients after every 4th step. But this loop already steps the optimizer\n"
                "every step, so between two resets each backward adds onto the gradients of the\n"
                "steps before: the logged gradient norm climbs for four steps and falls back, a\n"
                "sawtooth with period 4. Each update follows a sum of stale batches; Adam scales\n"
                "the size away, not the staleness, and the model stays near word frequencies.\n"
                "Accumulation means: step and clear together, every k micro-batches; never\n"
                "step every batch and clear every k-th."),
            tell="the gradient norm is a sawtooth of period 4: it falls to under 0.6x the step "
                 "before every 4th step and climbs in between; the loss stays near the unigram "
                 "baseline",
            changes=(STEP_CODE,),
            signal=Tell("plot grad_norm", grad_norm_sawtooth(4)),
            hints=("Plot the gradient norm (plot grad_norm), then read the update step "
                   "(code).",
                   "Is there a rhythm in the gradient norm? How many backwards does one .grad "
                   "hold at each step?")),
        Cause(
            id="tiny_batch",
            title="Each step trains on 4 sequences, not 32: the batch is split over 8 GPUs "
                  "that do not exist",
            fault=Fault("the data loader moved onto the launch template splits the batch by "
                        "the node's 8 GPUs though one process trains",
                        config={"batch_split": "by_node_gpus"}),
            explanation=(
                "The loader now takes its per-process batch from the launch template: the\n"
                "global batch divided by the node's 8 GPUs. But this job runs one process, so\n"
                "each step trains on 4 sequences, not 32 (the batch probe shows 4 rows; the\n"
                "config still says 32). The lr of 0.1 was tuned for 32: with an 8x noisier\n"
                "gradient every step is a large step in a random-ish direction, the loss\n"
                "swings from batch to batch (about three times last month's swing) and the\n"
                "model learns less. The\n"
                "interview rule: the lr and the batch size go together; when the batch\n"
                "silently shrinks, the tuned lr is suddenly too high."),
            tell="the batch probe shows 4 rows where config.json says batch_size 32; the loss "
                 "is noisy from the first steps and the gradient norm settles back (no climb)",
            changes=(LAUNCH_CODE,),
            signal=Tell("batch 0", first_batch_smaller_than_config),
            hints=("Look at one batch (batch 0) and compare it with config.json.",
                   "How many sequences does one step really train on, and how many was the "
                   "lr tuned for?")),
    ),
    fixes=(
        Fix("clear_gradients", "Clear the gradients after every step (grad = None)",
            config={"grad_reset": "grads_to_none"}),
        Fix("batch_per_process", "Split the batch by the processes that really train (1)",
            config={"batch_split": "by_processes"}),
        Fix("lower_lr", "Divide the learning rate by 10", scale={"lr": 0.1}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.4647) to the entropy floor
    # (0.9641), and a calm loss: the loss swing is the step-to-step noise over the last 40
    # steps (sim/engines/training.py). Measured on 40 keyed incidents (review-h-0..39, seeds
    # 1000-1039), each with every cause forced: healthy 0.66-0.88 of the way, swing
    # 0.031-0.057; the per-process batch of 4 learns 0.35-0.67 of the way but swings
    # 0.095-0.17 (8x fewer sequences: sqrt 8 = 2.8x the noise); gradients never cleared -0.22
    # to -0.02, cleared every 4th step -0.02 to 0.21; lr / 10 on the healthy draws 0.04-0.14
    # (calm, but it does not learn in 80 steps). With 60 steps and the swing as the std of the
    # last 8 losses, healthy draws swung 0.017-0.072 and the batch of 4 0.063-0.205: 4 in 40
    # healthy draws failed a bar of 0.06. No healthy draw fails on 100 unseen keys (review-u,
    # seeds 5000-5099).
    criterion=Criterion(min_learnt=0.5, baselines=(0.96407, 2.46469), max_loss_swing=0.075),
    resolves={"zero_grad_missing": ("clear_gradients",),
              "grads_cleared_every_4th_step": ("clear_gradients",),
              "tiny_batch": ("batch_per_process",)},
    harms=("lower_lr",),
    code=("grad_reset", "batch_split"),
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "momentum",
            "weight_decay", "batch_size", "grad_accum_steps"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change("Evaluate every 15 steps", {"eval_every": 15}),
        Change("Warm up over 8 steps instead of 5", {"warmup_steps": 8}),
        Change(STEP_CODE), Change(LAUNCH_CODE), Change(OPTIMIZER_CODE),
    ),
    interview_question="The training loss swings or spikes. What do you check before you "
                       "lower the learning rate?",
    debrief=(
        "Interview answer: a swinging loss is a symptom, and lowering the lr is the reflex\n"
        "that hides it. First read what the gradients do and what one step trains on:\n"
        "- a gradient norm that keeps climbing: gradients are not cleared between steps\n"
        "  (zero_grad missing, or a 'reset' that does not zero: detach_() is not zero_());\n"
        "- a gradient norm that climbs and falls back with a fixed period: gradients cleared\n"
        "  on an accumulation schedule while the optimizer steps every batch;\n"
        "- noise from the first step: check the batch the model really sees (per-device vs\n"
        "  global batch, world size); the lr must be tuned for the batch that actually runs;\n"
        "- a loss sawtooth with the period of an epoch: the data order (unshuffled, sorted by\n"
        "  length or source).\n"
        "Lower the lr only once the loop is right: here lr / 10 calms every curve and learns\n"
        "too little in the budget, broken or not."),
)
