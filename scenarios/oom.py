"""oom — CUDA out of memory. An oversized batch, a leak, or an evaluation that keeps a graph?"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, memory_climbs, out_of_memory_after_flat_steps, \
    out_of_memory_at_step

LOADER_CODE = "Moved gradient accumulation into the data loader"
METRIC_CODE = "Log a confidence metric every micro-batch"
EVAL_CODE = "Refactored the evaluation loop"

SCENARIO = Scenario(
    id="oom",
    title="CUDA out of memory",
    difficulty="medium",
    tags=("memory", "batch size", "gradient accumulation", "checkpointing"),
    story=(
        "A fine-tuning job on a 2.5 MiB (simulated) accelerator crashes with 'CUDA out of\n"
        "memory'. The recipe that reached the quality bar trained on 64 sequences per optimizer\n"
        "step (two micro-batches of 32) for 150 steps. Someone touched the training script\n"
        "since. Make it fit again, and keep the quality and the data budget (64 x 150 = 9,600\n"
        "sequences): a fix that fits but trains on less data is a different experiment, not a\n"
        "fix."),
    base={"data": "sft", "sft_lengths": "long_answers", "seq_len": 16, "n_layer": 1,
          "d_model": 32, "n_head": 2, "batch_size": 32, "grad_accum_steps": 2, "steps": 150,
          "lr": 1e-2, "eval_every": 25, "eval_batch_size": 64, "memory_budget_mib": 2.5},
    causes=(
        Cause(
            id="batch_too_large",
            title="The micro-batch is too large for the device",
            fault=Fault("the data loader yields the whole step's 64 sequences as one "
                        "micro-batch (it was given the global batch size)",
                        config={"batch_split": "by_optimizer_step"}),
            explanation=(
                "Activation memory grows linearly with the micro-batch. The refactored loader\n"
                "was handed the global batch size, so every forward pass ran all 64 sequences of\n"
                "the step at once. Such a step needs about 3.1 MiB at its peak, where a\n"
                "micro-batch of 32 needs 1.7, and the device has 2.5. The config still says\n"
                "micro-batches of 32; the batch probe shows 64 rows. It fails on the very first\n"
                "step, in the forward pass, always at the same place."),
            tell="out of memory at step 0 during the forward pass; activations dominate the "
                 "breakdown; the batch at step 0 has 64 sequences where the config says 32",
            changes=(LOADER_CODE,),
            signal=Tell("memory", out_of_memory_at_step(0)),
            hints=('Run the memory probe, then look at the batch at step 0 (batch 0).',
                   'At which step does it run out, which category dominates there, and how many sequences does the batch hold next to the batch size in the config?')),
        Cause(
            id="kept_graph",
            title="A logged metric keeps its autograd graph alive across steps",
            fault=Fault("a confidence metric is appended to a list as a tensor, not .item()",
                        config={"confidence_log": "graph_tensor"}),
            explanation=(
                "`history.append(confidence)` keeps a tensor that still carries autograd history:\n"
                "the softmax it came from saved its output for a backward pass that never happens.\n"
                "Every micro-batch adds one more (32 rows x 16 positions x 16 token probabilities,\n"
                "32 KiB), so memory in use climbs by about 0.07 MiB a step until, after a dozen\n"
                "steps, it runs out."),
            tell="memory in use at the end of each step climbs steadily; the out-of-memory "
                 "comes after a dozen healthy steps",
            changes=(METRIC_CODE,),
            signal=Tell("plot mem_mib", memory_climbs(0.02)),
            hints=('Plot the memory in use after each step (plot mem_mib).',
                   'Is memory flat from one step to the next, or does it rise a little every step until the crash?')),
        Cause(
            id="eval_with_grad",
            title="Evaluation runs with autograd enabled",
            fault=Fault("the refactored evaluation runs its forward pass without torch.no_grad()",
                        config={"eval_autograd": "graph_kept"}),
            explanation=(
                "Without torch.no_grad, the held-out forward pass stores every activation for a\n"
                "backward pass that never comes, on a batch twice the training micro-batch (64\n"
                "sequences against 32). Training steps fit; the first evaluation (step 24) does not."),
            tell="training steps are flat and well under budget; the crash is at the first "
                 "evaluation step",
            changes=(EVAL_CODE,),
            signal=Tell("plot mem_mib", out_of_memory_after_flat_steps(3)),
            hints=('Plot the memory in use after each step (plot mem_mib) and find the step the run died at in the log table (table).',
                   'Were the training steps flat and under the budget? What does the run do at the step it died that it does not do at the steps before?')),
    ),
    fixes=(
        Fix("micro_batch", "Micro-batches of 32 with 2 accumulation steps (same 64 per step)",
            config={"batch_size": 32, "grad_accum_steps": 2}),
        Fix("fix_loader", "Have the data loader yield micro-batches of batch_size",
            config={"batch_split": "by_processes"}),
        Fix("smaller_batch", "Cut the batch to 32 sequences", config={"batch_size": 32,
                                                                     "grad_accum_steps": 1}),
        Fix("checkpointing", "Turn on activation checkpointing",
            config={"activation_checkpointing": True}),
        Fix("detach_metric", "Log metrics with .item() (no graph kept)",
            config={"confidence_log": "python_float"}),
        Fix("eval_no_grad", "Run evaluation under torch.no_grad()",
            config={"eval_autograd": "graph_free"}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.4758: word frequencies) to the
    # entropy floor (0.9048), i.e. <= 1.690, and the recipe's data budget: 64 sequences x 150
    # steps. Measured on seeds 0-9 (benchmarks/learning.py): healthy 1.25-1.53 (60-78% of the
    # way). A smaller batch (32 x 150) learns almost as well on some seeds (65% of the way on
    # seed 0, 47% on seed 1: learning here is step-limited, not data-limited), so the held-out
    # bar alone would not reliably catch the trap; the data budget, read from the re-run itself,
    # does.
    criterion=Criterion(min_learnt=0.5, baselines=(0.9048, 2.4758), min_sequences_seen=64 * 150),
    resolves={"batch_too_large": ("fix_loader",), "kept_graph": ("detach_metric",),
              "eval_with_grad": ("eval_no_grad",)},
    harms=("smaller_batch",),
    code=("batch_split", "confidence_log", "eval_autograd"),
    evidence="mem_peak_mib",
    recipe=("batch_size", "grad_accum_steps", "activation_checkpointing", "precision",
            "loss_scale", "lr", "grad_clip", "warmup_steps", "schedule", "weight_decay"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Added a 2-step learning-rate warmup", {"warmup_steps": 2}),
        Change("Accumulate over 4 micro-batches of 16 (the same 64 per step)",
               {"batch_size": 16, "grad_accum_steps": 4}),
        Change(LOADER_CODE), Change(METRIC_CODE), Change(EVAL_CODE),
    ),
    interview_question="The model doesn't fit in GPU memory. What are your options, and what "
                       "does each cost?",
    debrief=(
        "First read the out-of-memory message and the memory timeline: a crash at step 0 is a\n"
        "sizing problem; memory that climbs step after step is a leak (tensors with graphs kept\n"
        "in lists, caches); a crash at one periodic step points at evaluation or checkpoint code.\n"
        "Options for sizing, with their price: gradient accumulation (same effective batch, more\n"
        "steps of wall time), activation checkpointing (about a third more compute; it shrinks\n"
        "the activations kept between checkpointed blocks, not parameters or optimizer state;\n"
        "this model has one block, which the backward pass recomputes whole, so its peak barely\n"
        "moves), mixed precision, smaller sequence length, and for big models sharding\n"
        "(ZeRO/FSDP), offload, LoRA/QLoRA — see `debugsim memory`. Cutting the batch without\n"
        "accumulation fits, but the model sees half of the data in the same steps, and the lr\n"
        "tuned for 64 is now too noisy: you changed the experiment. Keep the effective batch\n"
        "(accumulate) or re-tune lr and steps."),
)
