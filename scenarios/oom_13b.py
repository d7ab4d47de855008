"""oom_13b — fine-tune Llama-2-13B on one 40 GB GPU. Graded by the memory planner."""
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, dominant_category

SCENARIO = Scenario(
    id="oom_13b",
    title="A 13B model will not fit on one GPU",
    difficulty="hard",
    tags=("memory", "lora", "qlora", "zero", "checkpointing", "llm"),
    engine="planner",
    story=(
        "You must fine-tune Llama-2-13B (13.0 B parameters) on a single 40 GB GPU, in bf16 with\n"
        "AdamW. The job dies with 'CUDA out of memory' before the first step finishes. Work out\n"
        "where the memory goes and choose a combination of strategies that fits — the grader\n"
        "recomputes the per-GPU memory of your plan, category by category. Combine fixes with\n"
        "several --fix options, or set values directly (method=qlora checkpointing=true ...)."),
    base={"model": "llama-2-13b", "gpu": "40GB", "method": "lora", "precision": "bf16",
          "optimizer": "adamw", "batch": 1, "seq": 2048, "checkpointing": True, "flash": True},
    causes=(
        Cause(
            id="full_finetune",
            title="Full fine-tuning: weights, gradients and optimizer state of 13B parameters",
            fault=Fault("method switched from LoRA to full fine-tuning", config={"method": "full"}),
            explanation=(
                "Mixed-precision AdamW keeps 16 bytes per trained parameter: 2 (bf16 weights) + 2\n"
                "(gradients) + 4 (fp32 master copy) + 8 (two fp32 moments). 16 B x 13.0 B params is\n"
                "about 208 GB before a single activation, five times the card. Checkpointing cannot\n"
                "help (activations are ~1 GB), ZeRO needs more GPUs to shard over, offload still leaves\n"
                "52 GB of bf16 weights and gradients on the GPU, and 8-bit Adam only trims the moments."),
            tell="the breakdown is dominated by optimizer states (104 GB) and master weights "
                 "(52 GB); activations are a rounding error",
            changes=("Switched the training method in the job config",),
            signal=Tell("plan", dominant_category("optimizer_states")),
            hints=('Run the plan probe: the memory per GPU, category by category.',
                   'Which category is the largest? Ask whether it grows with the number of parameters being trained or with micro-batch x sequence length.')),
        Cause(
            id="unchecked_activations",
            title="Activations: a long sequence and a big micro-batch with checkpointing off",
            fault=Fault("checkpointing turned off, micro-batch 4 at 4096 tokens",
                        config={"checkpointing": False, "batch": 4, "seq": 4096}),
            explanation=(
                "LoRA keeps the model states small (26 GB of frozen bf16 weights, tiny adapters),\n"
                "but every layer stores its activations for the backward pass, and they grow with\n"
                "micro-batch x sequence length: about 155 GB here. Activation checkpointing keeps\n"
                "only each layer's input and recomputes the rest in the backward pass (~1/3 more\n"
                "compute). Quantising the weights (QLoRA) does nothing for activations."),
            tell="activations dominate the breakdown and scale with batch x seq; model states are "
                 "under a third of the card",
            changes=("Moved to the long-context data (4096 tokens)",
                     "Switched the training method in the job config"),
            signal=Tell("plan", dominant_category("activations")),
            hints=('Run the plan probe: the memory per GPU, category by category.',
                   'Which category is the largest, and would it shrink if the micro-batch or the sequence got shorter? How big are the model states next to it?')),
    ),
    fixes=(
        Fix("lora", "Train LoRA adapters (r=16 on q,v) on a frozen bf16 base", config={"method": "lora"}),
        Fix("qlora", "QLoRA: LoRA on a 4-bit NF4 base", config={"method": "qlora"}),
        Fix("checkpointing", "Turn on activation checkpointing", config={"checkpointing": True}),
        Fix("micro_batch", "Micro-batch of 1 with gradient accumulation", config={"batch": 1}),
        Fix("zero3", "ZeRO stage 3 / FSDP", config={"zero": 3}),
        Fix("offload", "Offload optimizer states and master weights to the CPU",
            config={"offload": True}),
        Fix("adam8bit", "8-bit Adam", config={"optimizer": "adam8bit"}),
    ),
    criterion=Criterion(require_finite=False),
    resolves={"full_finetune": ("lora", "qlora"), "unchecked_activations": ("checkpointing",)},
    recipe=("method", "checkpointing", "batch", "flash", "zero", "offload", "optimizer",
            "lora_rank", "lora_targets", "double_quant", "master_weights"),
    fixed={"model": "the model is the job: fine-tune Llama-2-13B",
           "gpu": "the hardware is part of the problem: one 40 GB GPU",
           "gpus": "the job has one GPU",
           "seq": "the sequence length is the data: it is part of the problem",
           "precision": "the job trains in bf16", "inference": "the job is training"},
    decoys=(
        Change("Lowered the LoRA rank to 8", {"lora_rank": 8}),
        Change("Moved to the long-context data (4096 tokens)", {"seq": 4096}),
        Change("Switched the training method in the job config"),
        Change("Updated the data pipeline"),
    ),
    interview_question="A 13B model does not fit on your GPU for fine-tuning. What are your "
                       "options, and how much does each save?",
    debrief=(
        "Do the arithmetic out loud: parameters x bytes per parameter for each state. Full\n"
        "mixed-precision AdamW is 16 B/param (ZeRO paper), so 13B needs ~208 GB of model states.\n"
        "Options, cheapest in quality first: activation checkpointing (compute for memory;\n"
        "only touches activations), ZeRO-1/2/3 or FSDP (shard states over N GPUs: needs N),\n"
        "CPU offload (slower steps; weights and grads stay on the GPU), 8-bit optimizers,\n"
        "LoRA (freeze the base, train ~0.1% of the parameters), QLoRA (the frozen base in 4-bit\n"
        "NF4, ~0.52 B/param with double quantisation). Then check activations separately:\n"
        "they scale with micro-batch x sequence length, and checkpointing, flash attention and\n"
        "gradient accumulation are the levers. `debugsim memory` runs these numbers for any model."),
)
