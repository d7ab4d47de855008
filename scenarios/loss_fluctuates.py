"""loss_fluctuates — the loss swings, spikes and ends where it started. Every cause is the team's
training code (the update step in `sim/loop.py`, the per-process batch in `sim/data.py`), so
config.json is the same for all of them; the code probe shows the functions that ran.

Measured at this scale (AdamW, the window MLP, 60 steps): gradient accumulation that sums
instead of averaging changes nothing under Adam (it divides the scale out), and a data order
sorted by source or repeating a small shard does not hurt a model this small; SGD does not
learn this model in 60 steps at all. The causes below are the ones that really break it.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, first_batch_smaller_than_config, grad_norm_ramps, \
    loss_spikes, none_of

STEP_CODE = "Refactored the training step into small functions"
LAUNCH_CODE = "Moved the data loader onto the shared launch template"
OPTIMIZER_CODE = "Refactored the optimizer setup"

SCENARIO = Scenario(
    id="loss_fluctuates",
    title="The loss swings and will not settle",
    difficulty="medium",
    tags=("loss fluctuation", "gradient clipping", "zero_grad", "batch size", "training loop"),
    story=(
        "Your team trains a small MLP language model with an aggressive recipe: AdamW at lr\n"
        "0.25, gradients clipped at a norm of 0.3, 32 sequences per step, 60 steps. Tuned that\n"
        "way it reached a held-out loss well below word frequencies; without the clipping the\n"
        "same recipe spikes and stalls. After a round of refactoring the loss now jumps and\n"
        "swings and ends about where it began. config.json is unchanged. Find out why and fix\n"
        "the cause, not the symptom."),
    # Measured on seeds 0-5 (bare): healthy 0.53-0.79 of the way from the unigram baseline to
    # the floor; the same recipe without clipping 0.01-0.48; lr / 10 0.22-0.30 (it learns too
    # slowly to pass, healthy or not).
    base={"model": "mlp", "d_model": 16, "optimizer": "adamw", "lr": 0.25, "grad_clip": 0.3,
          "warmup_steps": 5, "schedule": "cosine", "batch_size": 32, "steps": 60},
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
                "gradient norm climbs step after step (to tens of times where it started),\n"
                "and every update follows the accumulated direction of old batches rather than\n"
                "the current one. The model overshoots and swings, and ends at word\n"
                "frequencies. Clipping caps the size of the sum, not its staleness."),
            tell="the logged gradient norm climbs and stays high: every one of the last 10 "
                 "steps is at least 8x step 0's (a healthy run settles back near where it "
                 "started); the loss spikes and ends near the unigram baseline",
            changes=(STEP_CODE,),
            signal=Tell("plot grad_norm", grad_norm_ramps(8.0)),
            hints=("Plot the gradient norm (plot grad_norm), then read the update step "
                   "(code).",
                   "Does the gradient norm settle back after the early spike, or keep growing? "
                   "What happens to a .grad between one step and the next?")),
        Cause(
            id="clip_after_step",
            title="Gradients are clipped after the optimizer step, so clipping does nothing",
            fault=Fault("the refactored update step applies the optimizer step first and clips "
                        "the gradients afterwards", config={"clip_order": "step_then_clip"}),
            explanation=(
                "The config says grad_clip 0.3 and the code does call clip_grad_norm_, but\n"
                "after optimizer.step(): the update has already used the raw gradients, and\n"
                "the clipped ones are cleared a line later. The recipe's lr was tuned with the\n"
                "clipping on; without it, the spikes of the early steps (gradient norms 3-15x\n"
                "the clip) go into Adam's moments whole, throw the weights far off, and most\n"
                "hidden units end in GELU's flat tail: the loss stalls at word frequencies.\n"
                "It is the same run as grad_clip=0, though config.json and the log say it\n"
                "clips."),
            tell="the loss spikes early and stalls near the unigram baseline although config "
                 "says grad_clip 0.3; the gradient norm settles back (no climb) and the batch "
                 "is full: only the code's order of clip and step differs",
            changes=(STEP_CODE, OPTIMIZER_CODE),
            signal=Tell("plot loss, code", all_of(loss_spikes(1.3, within=20),
                                                  none_of(grad_norm_ramps(8.0),
                                                          first_batch_smaller_than_config))),
            hints=("Plot the loss and the gradient norm (plot loss, plot grad_norm), then read "
                   "the update step (code).",
                   "The config clips at 0.3: at which point of the step do the clipped "
                   "gradients get used, if at all?")),
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
                "config still says 32). The lr of 0.25 was tuned for 32: with an 8x noisier\n"
                "gradient every step is a large step in a random-ish direction, the loss\n"
                "swings from batch to batch, and the model ends at word frequencies. The\n"
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
        Fix("clip_before_step", "Clip the gradients before the optimizer step",
            config={"clip_order": "clip_then_step"}),
        Fix("batch_per_process", "Split the batch by the processes that really train (1)",
            config={"batch_split": "by_processes"}),
        Fix("lower_lr", "Divide the learning rate by 10", scale={"lr": 0.1}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.4647) to the entropy floor
    # (0.9641): <= 1.714. Measured bare on seeds 0-5: healthy 0.53-0.79 of the way; each cause
    # -0.03-0.48; lr / 10 on a healthy run 0.22-0.30 (calmer, but it does not learn in 60 steps).
    criterion=Criterion(min_learnt=0.5, baselines=(0.9641, 2.4647)),
    resolves={"zero_grad_missing": ("clear_gradients",),
              "clip_after_step": ("clip_before_step",),
              "tiny_batch": ("batch_per_process",)},
    harms=("lower_lr",),
    code=("clip_order", "grad_reset", "batch_split"),
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "momentum",
            "weight_decay", "batch_size", "grad_accum_steps"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change("Evaluate every 15 steps", {"eval_every": 15}),
        Change(STEP_CODE), Change(LAUNCH_CODE), Change(OPTIMIZER_CODE),
    ),
    interview_question="The training loss swings or spikes. What do you check before you "
                       "lower the learning rate?",
    debrief=(
        "Interview answer: a swinging loss is a symptom, and lowering the lr is the reflex\n"
        "that hides it. First read what the gradients do and what one step trains on:\n"
        "- a gradient norm that keeps climbing: gradients are not cleared between steps\n"
        "  (zero_grad missing, or a 'reset' that does not zero: detach_() is not zero_());\n"
        "- spikes although the config clips: check where the clip sits. clip_grad_norm_ must\n"
        "  run after backward and before optimizer.step(); after the step it changes nothing;\n"
        "- noise from the first step: check the batch the model really sees (per-device vs\n"
        "  global batch, world size); the lr must be tuned for the batch that actually runs;\n"
        "- a sawtooth with a fixed period: the data order (unshuffled, sorted by length or\n"
        "  source) or a periodic reset (accumulation that zeroes on the wrong step).\n"
        "Lower the lr only once the loop is right: here lr / 10 calms every curve and learns\n"
        "too little in the budget, broken or not."),
)
