"""lora_wont_learn — a LoRA fine-tune whose loss barely moves, or whose optimizer holds far more
than the plan. Every cause is the team's LoRA code (`sim/lora.py`): how the adapters start, how
their output is scaled, how the base is frozen, which parameters reach the optimizer.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, gradient_zero_throughout, no_update_while_gradients_grow, \
    summary_at_least, summary_at_most, weights_move_every_step

LORA_CODE = "Rewrote the LoRA layer without the PEFT dependency"
SETUP_CODE = "Moved the optimizer setup ahead of the model wrapping"
FREEZE_CODE = "Refactored how the base model is frozen"
INIT_CODE = "Refactored the adapter initialisation"

SCENARIO = Scenario(
    id="lora_wont_learn",
    title="The LoRA fine-tune will not learn",
    difficulty="medium",
    tags=("lora", "peft", "fine-tuning", "optimizer", "memory"),
    story=(
        "Your team adapts its pretrained language model to prompt/response pairs with LoRA\n"
        "(r=4, lora_alpha=32, adapters on the `hidden` and `out` layers; only the response and\n"
        "its EOS are learnt). Last month's run brought the held-out loss well down in 80 steps,\n"
        "and its optimizer held about 0.01 MiB: the adapters' Adam moments, the memory plan\n"
        "that lets the job share its device. Since then someone replaced the PEFT library\n"
        "with a hand-written LoRA layer and tidied the training script. Now the loss barely\n"
        "moves, or the job needs far more memory than planned. Find out why and fix the cause."),
    # The MLP LM starts from the team's checkpoint (trained on the plain toy language): it knows
    # the words but has never seen SEP or EOS, so its held-out SFT loss starts near 3.6 nats.
    base={"data": "sft", "model": "mlp", "base_model": "pretrained", "d_model": 32,
          "lora_r": 4, "lora_alpha": 32.0, "lora_targets": "hidden,out", "batch_size": 32,
          "lr": 1e-2, "warmup_steps": 5, "schedule": "cosine", "steps": 80},
    causes=(
        Cause(
            id="adapters_not_in_optimizer",
            title="The optimizer was given the parameters from before the adapters existed",
            fault=Fault("the optimizer's parameter list is collected before the adapters are "
                        "added and the base frozen: it holds only frozen base weights",
                        config={"lora_setup": "collect_then_wrap"}),
            explanation=(
                "The parameter list for the optimizer was taken before the adapters were added.\n"
                "It holds the base weights, which the wrapping then froze: they get no gradient,\n"
                "so the optimizer steps nothing. The adapters do get gradients, but no optimizer\n"
                "holds them, so they never move, and `zero_grad` never clears them either: their\n"
                "gradients pile up step after step (the grad norm climbs while nothing moves).\n"
                "PEFT's trainable-parameter line looks perfect; what counts is what the optimizer\n"
                "holds. The params probe shows A and B trainable, with gradients, not in the\n"
                "optimizer, moved 0."),
            tell="update/param is exactly 0 at every step while the gradient norm climbs; the "
                 "params probe: A and B have gradients but are not in the optimizer and never "
                 "moved; the optimizer holds no state",
            changes=(SETUP_CODE,),
            signal=Tell("table (upd/param, grad_norm), params", no_update_while_gradients_grow),
            hints=("Read the log table (table): the update/param and grad_norm columns. Then "
                   "the params probe.",
                   "Does anything move? If gradients exist, who is supposed to apply them, and "
                   "which parameters does it hold?")),
        Cause(
            id="adapters_zero_init",
            title="A and B are both initialised to zero, so no gradient reaches either",
            fault=Fault("the rewritten LoRA layer initialises both A and B to zero",
                        config={"lora_init": "both_zero"}),
            explanation=(
                "LoRA starts B at zero so that the adapted model starts exactly as the base, but\n"
                "A must start random. The gradient of B is (scaling) x the upstream gradient times\n"
                "A·x, and the gradient of A is (scaling) x Bᵀ times the upstream gradient: with both\n"
                "at zero, both gradients are exactly zero, forever. Adam divides zero by\n"
                "(0 + eps): nothing moves. The loss drifts only with the batches: the held-out\n"
                "loss at the end is the pretrained model's, to the last digit."),
            tell="the gradient norm is exactly 0 at every step; the params probe: A and B in the "
                 "optimizer, gradient 0, moved 0",
            changes=(INIT_CODE,),
            signal=Tell("table (grad_norm), params", gradient_zero_throughout),
            hints=("Read the log table (table), then the params probe.",
                   "Which parameters receive a gradient at all? What must be non-zero in B·A for "
                   "either matrix to get one?")),
        Cause(
            id="scaling_inverted",
            title="The adapter scaling is r / alpha instead of alpha / r",
            fault=Fault("the rewritten LoRA layer scales the adapter's output by r / alpha "
                        "(1/8) instead of alpha / r (8)",
                        config={"lora_scaling": "r_over_alpha"}),
            explanation=(
                "PEFT scales the adapter's output by lora_alpha / r: 32 / 4 = 8 here. The\n"
                "rewritten layer computes r / alpha = 1/8, 64 times smaller. With Adam the size of\n"
                "each step on A and B is set by the lr, not by the gradient, so A and B move just\n"
                "as much as last month (the params probe shows it), yet their effect on the output\n"
                "is 64 times smaller: the loss falls only part of the way. Ten times the lr makes\n"
                "up for most of it (alpha acts as an lr multiplier for the adapters), which is\n"
                "why 'raise the lr' seems to work: it tunes the lr around a bug, and the day\n"
                "someone fixes the scaling, that lr is ten times too high."),
            tell="every step moves the weights (update/param above 0) and the optimizer holds only "
                 "the adapters, yet the loss falls only part of the way; the code shows the "
                 "scaling",
            changes=(LORA_CODE,),
            signal=Tell("table (upd/param), params, code",
                        all_of(weights_move_every_step,
                               summary_at_most("optimizer_state_mib", 0.03))),
            hints=("Read the log table (table) and the params probe; then the LoRA code (code).",
                   "A and B move; by how much is their product multiplied on the way out, and what "
                   "should that factor be for r=4 and lora_alpha=32?")),
        Cause(
            id="base_trainable",
            title="The base model was never frozen: every parameter trains",
            fault=Fault("the freezing loop compares requires_grad with False instead of "
                        "assigning it", config={"lora_freeze": "compare"}),
            explanation=(
                "`param.requires_grad == False` compares and throws the answer away; it should be\n"
                "`param.requires_grad = False`. Nothing is frozen: the base model trains with the\n"
                "adapters, which is full fine-tuning plus LoRA. The loss falls (even a little\n"
                "faster), but the optimizer holds Adam's two moments for every parameter: 11 times\n"
                "the plan. At the scale LoRA is used for, that is the difference between a 13B\n"
                "model's adapters (megabytes) and its full optimizer state (about 100 GB). The\n"
                "trainable-parameter line says trainable%: 100."),
            tell="the optimizer state is about 11x the plan (0.13 MiB, not 0.01); the params "
                 "probe's line says trainable% 100 and the base weights moved",
            changes=(FREEZE_CODE,),
            signal=Tell("summary (optimizer state), params",
                        summary_at_least("optimizer_state_mib", 0.05)),
            hints=("Compare the run's optimizer state with the plan, then run the params probe.",
                   "What share of the parameters is trainable, and which of them moved?")),
    ),
    fixes=(
        Fix("collect_after_wrapping", "Hand the optimizer the trainable parameters after the "
            "adapters are added and the base frozen", config={"lora_setup": "wrap_then_collect"}),
        Fix("init_a_random", "Initialise A like a linear layer's weight, B at zero",
            config={"lora_init": "a_like_linear"}),
        Fix("scale_alpha_over_r", "Scale the adapter's output by lora_alpha / r",
            config={"lora_scaling": "alpha_over_r"}),
        Fix("assign_requires_grad", "Freeze the base by assigning requires_grad = False",
            config={"lora_freeze": "assign"}),
        Fix("raise_lr", "Multiply the learning rate by 10", scale={"lr": 10.0},
            cost="the lr is 10x the recipe's to make up for the adapter's 64x too small "
                 "scaling: once the scaling is fixed this lr wrecks the run"),
    ),
    # Held-out loss (response words and EOS) at least 30% of the way from the unigram baseline
    # (2.5274) to the entropy floor (1.0284), as sft_label_mask (the window MLP cannot count
    # the words of an answer). Measured on bare seeds 0-6: healthy 0.40-0.47 of the way; the
    # pretrained model itself -0.7; inverted scaling -0.02 to 0.17, with lr x 10 0.38-0.49 (a
    # workaround); lr x 10 on a healthy run 0.06-0.24. Optimizer state: healthy 0.011 MiB, the
    # unfrozen base 0.126 MiB.
    criterion=Criterion(min_learnt=0.3, baselines=(1.0284, 2.5274),
                        max_optimizer_state_mib=0.03),
    resolves={"adapters_not_in_optimizer": ("collect_after_wrapping",),
              "adapters_zero_init": ("init_a_random",),
              "scaling_inverted": ("scale_alpha_over_r", "raise_lr"),
              "base_trainable": ("assign_requires_grad",)},
    harms=("raise_lr",),
    code=("lora_setup", "lora_freeze", "lora_init", "lora_scaling"),
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "weight_decay",
            "batch_size", "grad_accum_steps"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Warm up over 10 steps instead of 5", {"warmup_steps": 10}),
        Change("Add weight decay 0.01", {"weight_decay": 0.01}),
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change(LORA_CODE), Change(SETUP_CODE), Change(FREEZE_CODE), Change(INIT_CODE),
    ),
    interview_question="Your LoRA fine-tune's loss won't move (or it uses as much memory as "
                       "full fine-tuning). What do you check?",
    debrief=(
        "Interview answer: first print the trainable-parameter report and the optimizer's\n"
        "parameter groups. Then, one step in, check which parameters got a gradient and which\n"
        "moved. Then:\n"
        "- trainable% near 100: the base is not frozen (a `==` for `=`, or a wrapper that never\n"
        "  ran); LoRA's memory saving (optimizer state and gradients for the adapters only) is\n"
        "  gone;\n"
        "- adapters with gradients that never move: the optimizer was built before the model\n"
        "  was wrapped (build it from the wrapped model's trainable parameters);\n"
        "- no gradient anywhere: B·A with both A and B at zero has a zero gradient for both;\n"
        "  B starts at zero, A random (Kaiming), so training starts exactly at the base model;\n"
        "- A and B move but nothing changes: check the scaling, lora_alpha / r. With Adam, alpha\n"
        "  acts as a learning-rate multiplier for the adapters; that is why raising the lr seems\n"
        "  to help a too-small scaling, and why it wrecks a healthy run.\n"
        "Raising the lr is the usual first move for a flat loss, and here it fixes nothing that\n"
        "is broken."),
)
