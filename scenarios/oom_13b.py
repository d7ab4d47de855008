"""oom_13b — fine-tune Llama-2-13B on one 40 GB GPU. Graded by the memory planner.

The job config says what the team asked for (LoRA, checkpointing, ...); a bug in the team's
launcher (`sim/memplan/launcher.py`) makes the job run something else. Everything a learner
reads names the job by its config; only the numbers come from what ran.
"""
from ..sim.memplan.launcher import DropsPeftConfig, IgnoresCheckpointingFlag
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, category_share_at_least, trainable_share_at_least

LONGER_DATA = "Moved to the 2048-token data (was 1024)"
LAUNCHER_CODE = "Moved the model setup into the shared launcher script"

SCENARIO = Scenario(
    id="oom_13b",
    title="A 13B model will not fit on one GPU",
    difficulty="hard",
    tags=("memory", "lora", "qlora", "zero", "checkpointing", "llm"),
    engine="planner",
    story=(
        "Your team fine-tunes Llama-2-13B (13.0 B parameters) with LoRA adapters on a single\n"
        "40 GB GPU, in bf16 with AdamW and activation checkpointing. Last week's run fit with\n"
        "room to spare; this week's job dies with 'CUDA out of memory' before its first step\n"
        "finishes. The job description below is the job config: what the team asked for. Find\n"
        "where the memory goes and why, then fix it; the grader recomputes the per-GPU memory\n"
        "of the job as your fix makes it run, category by category. Combine fixes with several\n"
        "--fix options, or set config values directly (method=qlora batch=1 ...)."),
    base={"model": "llama-2-13b", "gpu": "40GB", "method": "lora", "precision": "bf16",
          "optimizer": "adamw", "batch": 1, "seq": 1024, "checkpointing": True, "flash": True,
          "lora_rank": 16, "lora_targets": "q,v"},
    causes=(
        Cause(
            id="peft_config_dropped",
            title="The launcher never applies the LoRA config: every parameter trains",
            fault=Fault("the new shared launcher never calls get_peft_model (a full fine-tune "
                        "whatever the config says), with this week's 2048-token data",
                        config={"seq": 2048}, callbacks=(DropsPeftConfig,)),
            explanation=(
                "The config asks for LoRA, but the new shared launcher loads the plain model and\n"
                "never wraps it with get_peft_model, so the trainer gets 13.0 B trainable\n"
                "parameters (print_trainable_parameters: trainable% 100). Mixed-precision AdamW\n"
                "keeps 16 bytes for each of them: 2 for the bf16 weight, 2 for its gradient, 4 for\n"
                "the fp32 master copy and 8 for Adam's two fp32 moments, about 208 GB before a\n"
                "single activation. Nothing on one GPU rescues that: weights and gradients alone\n"
                "are 52 GB, ZeRO has no second GPU to shard over, offload still leaves those 52 GB\n"
                "behind, 8-bit Adam only trims the moments, and writing lora or qlora into the\n"
                "config changes nothing while the launcher ignores that block. The longer data is\n"
                "a red herring here: with checkpointing, activations stay near 1 GB."),
            tell="print_trainable_parameters reports trainable% 100 though the config asks for "
                 "LoRA; optimizer states (~104 GB) and the fp32 master copy (~52 GB) dominate",
            changes=(LONGER_DATA, LAUNCHER_CODE),
            signal=Tell("plan", trainable_share_at_least(0.99)),
            hints=("Run the plan probe: what the job holds per GPU, category by category, and "
                   "how many parameters it trains.",
                   "Read the trainable-parameter line against what the config asks for, and see "
                   "which categories grow with the number of parameters being trained.")),
        Cause(
            id="checkpointing_not_enabled",
            title="Checkpointing is in the config but never switched on in the model",
            fault=Fault("the new shared launcher never calls gradient_checkpointing_enable(); "
                        "with this week's 2048-token data the full activations no longer fit",
                        config={"seq": 2048}, callbacks=(IgnoresCheckpointingFlag,)),
            explanation=(
                "The config says checkpointing: true, but the new launcher never calls\n"
                "model.gradient_checkpointing_enable(), so each of the 40 layers keeps all of its\n"
                "activations for the backward pass: about 7.7 MB per token for this model, some\n"
                "16 GB at 2048 tokens (13 GB more with eager attention, which also keeps every\n"
                "attention matrix). Checkpointing would keep only each layer's input (2 bytes x\n"
                "5120 per token per layer) and recompute the rest, about 1 GB in all. The LoRA\n"
                "part works (0.1% of the parameters train), so the model states are the 26 GB\n"
                "frozen bf16 base and little else. Either change alone would have fit: the\n"
                "launcher at 1024 tokens, or checkpointing at 2048. Writing checkpointing: true\n"
                "again does nothing, it already says so, and neither does a smaller micro-batch\n"
                "(it is 1). QLoRA makes it fit by shrinking the frozen base to ~7 GB: a\n"
                "workaround with a quality cost, and the next longer sequence fails again."),
            tell="activations take over a third of the step's memory (16 GB or more at 2048 "
                 "tokens, where checkpointing keeps ~1 GB); only the adapters' ~0.1% of "
                 "parameters train",
            changes=(LONGER_DATA, LAUNCHER_CODE),
            signal=Tell("plan", category_share_at_least("activations", 0.25)),
            hints=("Run the plan probe, then strategies: what the job holds against what its "
                   "config should need.",
                   "Look at the activations: how big are they next to what the config's settings "
                   "should keep per layer, and which setting in the config is meant to keep them "
                   "small?")),
    ),
    fixes=(
        Fix("pass_peft_config", "Launcher: wrap the model with get_peft_model and the job's "
            "LoRA config", repairs=(DropsPeftConfig,)),
        Fix("enable_checkpointing", "Launcher: call model.gradient_checkpointing_enable() when "
            "the config asks for checkpointing", repairs=(IgnoresCheckpointingFlag,)),
        Fix("lora", "Config: train LoRA adapters on a frozen bf16 base (method: lora)",
            config={"method": "lora"}),
        Fix("qlora", "Config: QLoRA, LoRA on a 4-bit NF4 base (method: qlora)",
            config={"method": "qlora"},
            cost="QLoRA trains on a 4-bit NF4 copy of the base: quantisation error in every "
                 "frozen weight and a dequantisation in every matmul, a different model from "
                 "the bf16 one the recipe was tuned on"),
        Fix("checkpointing", "Config: turn on activation checkpointing",
            config={"checkpointing": True}),
        Fix("micro_batch", "Config: micro-batch of 1 with gradient accumulation",
            config={"batch": 1}),
        Fix("zero3", "Config: ZeRO stage 3 / FSDP", config={"zero": 3}),
        Fix("offload", "Config: offload optimizer states and master weights to the CPU",
            config={"offload": True}),
        Fix("adam8bit", "Config: 8-bit Adam", config={"optimizer": "adam8bit"}),
    ),
    criterion=Criterion(require_finite=False),
    # Only the launcher repairs resolve. QLoRA fits the un-checkpointed activations (~24 GB at
    # most here, ~37 GB with the eager-attention decoy) at a quality cost: a workaround. For the
    # full fine-tune nothing in the config fits one GPU (weights + gradients are 52 GB).
    resolves={"peft_config_dropped": ("pass_peft_config",),
              "checkpointing_not_enabled": ("enable_checkpointing", "qlora")},
    recipe=("method", "checkpointing", "batch", "flash", "zero", "offload", "optimizer",
            "lora_rank", "lora_targets", "double_quant", "master_weights"),
    fixed={"model": "the model is the job: fine-tune Llama-2-13B",
           "gpu": "the hardware is part of the problem: one 40 GB GPU",
           "gpus": "the job has one GPU",
           "seq": "the sequence length is the data: it is part of the problem",
           "precision": "the job trains in bf16", "inference": "the job is training"},
    decoys=(
        Change("Lowered the LoRA rank to 8", {"lora_rank": 8}),
        Change("LoRA adapters on all four attention projections", {"lora_targets": "q,k,v,o"}),
        Change("Switched attention to the eager implementation", {"flash": False}),
        Change(LONGER_DATA, {"seq": 2048}),
        Change(LAUNCHER_CODE),
        Change("Upgraded transformers and peft"),
        Change("Updated the data pipeline"),
    ),
    interview_question="A 13B model does not fit on your GPU for fine-tuning. What are your "
                       "options, how much does each save, and how do you check that the job "
                       "runs what its config says?",
    debrief=(
        "Start from bytes per parameter. Mixed-precision AdamW holds 16 B for every trained\n"
        "parameter (2 weight + 2 gradient + 4 fp32 master + 8 for two moments), so a full\n"
        "fine-tune of 13B is ~208 GB of model states; a frozen bf16 base is 2 B/param (26 GB),\n"
        "a 4-bit NF4 base about 0.52 B/param. Then activations, which grow with micro-batch x\n"
        "sequence length and which checkpointing cuts to each layer's input. The levers and\n"
        "their price: checkpointing (~a third more compute), ZeRO/FSDP (needs the GPUs to\n"
        "shard over), CPU offload (slower steps, weights and gradients stay), 8-bit Adam (the\n"
        "moments only), LoRA (less capacity), QLoRA (quantisation error). But first compare\n"
        "the estimate for the config with what the job actually holds: when they disagree,\n"
        "the job is not running its config. print_trainable_parameters() and\n"
        "model.is_gradient_checkpointing take one line each to check after the launcher ran.\n"
        "`debugsim memory` runs the estimate for any model."),
)
