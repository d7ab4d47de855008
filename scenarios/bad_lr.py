"""bad_lr — the loss will not come down. Is the learning rate too high or too low?"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, loss_never_rises, loss_spikes

SCENARIO = Scenario(
    id="bad_lr",
    title="The loss will not come down",
    difficulty="easy",
    tags=("learning rate", "optimizer", "tuning"),
    story=(
        "A small MLP language model on a toy language used to reach a loss near 1.3 in 60\n"
        "steps. After a 'cleanup' of the config, it ends far higher. Nothing crashes, no NaN.\n"
        "The data and the model are unchanged. Find what is wrong and tune it back."),
    base={"model": "mlp", "optimizer": "adamw", "lr": 3e-2, "warmup_steps": 5,
          "schedule": "cosine", "steps": 60},
    causes=(
        Cause(
            id="lr_too_high",
            title="The learning rate is too high",
            fault=Fault("lr 0.3 (ten times the tuned value)", config={"lr": 0.3}),
            explanation=(
                "The first large updates threw the weights far from where the gradients point;\n"
                "the gradient norm spiked by two orders of magnitude, ReLU-like units died, and the\n"
                "model fell back to predicting word frequencies (loss ~2.48 = ln 12)."),
            tell="gradient-norm spike in the first steps, then a loss stuck at the unigram "
                 "level; the LR range test's loss blows up well below this lr",
            changes=("Cleaned up the optimizer settings",),
            signal=Tell("plot loss", loss_spikes(2.0, within=15))),
        Cause(
            id="lr_too_low",
            title="The learning rate is too low",
            fault=Fault("lr 3e-3 (ten times below the tuned value)", config={"lr": 3e-3}),
            explanation=(
                "Each step moved the weights by a tiny fraction of their size: the update/param\n"
                "ratio sat far below the usual ~1e-3, so in 60 steps the model barely left its\n"
                "initial guess. Nothing is broken; it is just slow."),
            tell="smooth, slowly falling loss with no spikes; update/param ratio far below 1e-3; "
                 "the LR range test suggests a much larger lr",
            changes=("Cleaned up the optimizer settings",),
            signal=Tell("plot loss", loss_never_rises(0.05))),
    ),
    fixes=(
        Fix("lr_down_10x", "Divide the learning rate by 10", scale={"lr": 0.1}),
        Fix("lr_up_10x", "Multiply the learning rate by 10", scale={"lr": 10.0}),
        Fix("longer_warmup", "Warm up over 20 steps instead of 5", config={"warmup_steps": 20}),
        Fix("clip_grad", "Clip the global gradient norm at 1.0", config={"grad_clip": 1.0}),
        Fix("train_longer", "Train twice as long (120 steps)", config={"steps": 120},
            cost="it doubles the compute budget instead of fixing the step size"),
    ),
    criterion=Criterion(max_final_loss=1.6, max_loss_swing=0.1),
    resolves={"lr_too_high": ("lr_down_10x",), "lr_too_low": ("lr_up_10x",)},
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "momentum",
            "weight_decay", "batch_size", "grad_accum_steps"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change("Refactored the data loader"),
        Change("Refactored the training loop"),
    ),
    interview_question="The training loss swings / won't decrease. How do you tune the "
                       "learning rate and batch size?",
    debrief=(
        "Look at the shape of the curve before touching anything. Spikes, oscillation or a\n"
        "jump up followed by a plateau mean the steps are too big: lower the lr, add warmup\n"
        "(it protects the first steps, when Adam's second-moment estimates are poor), clip\n"
        "gradients. A smooth but slow descent with a tiny update/param ratio means the steps\n"
        "are too small. The LR range test (sweep lr up exponentially for a few dozen steps,\n"
        "take roughly a tenth of where the loss blows up) finds the range in minutes. If you\n"
        "change the batch size, scale the lr with it (linearly for SGD, about with the square\n"
        "root for Adam) and re-check. Training longer only hides a too-low lr at a high price."),
)
