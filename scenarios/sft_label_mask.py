"""sft_label_mask — an SFT run whose answers never stop, or whose loss is too good to be true.

Every cause is a bug in the data pipeline's code (`sim/data.py`: the prompt template, the label
mask, the target shift), so config.json is the same for all of them; the `mask` probe shows
one example token by token, and the `code` probe shows the functions that built it.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, eos_in_first_batch, labels_before_separator, \
    summary_at_least, summary_at_most

TEMPLATE_CODE = "Moved the prompt template into the shared data module"
MASK_CODE = "Refactored the label masking"
COLLATOR_CODE = "Refactored the collator"
TOKENS_CODE = "Renamed the special tokens in the data module"

SCENARIO = Scenario(
    id="sft_label_mask",
    title="The fine-tuned model will not stop talking",
    difficulty="medium",
    tags=("sft", "labels", "masking", "eos", "data pipeline"),
    story=(
        "Your team fine-tunes a small language model on prompt/response pairs (SFT): each\n"
        "example is [BOS] prompt [SEP] response [EOS], and only the response and its EOS\n"
        "should be learnt. Last week's model answered held-out prompts with a few words and\n"
        "stopped. After this week's clean-up of the data pipeline the answers run on to the\n"
        "token limit, or make no sense at all, though the training loss looks fine, or even\n"
        "better than before. The model, the optimizer and the data are unchanged. Find out\n"
        "why and fix the cause: healthy answers stop, and the held-out loss on response tokens\n"
        "(measured by the grader's own pipeline) shows the model learnt the language."),
    # An MLP LM (the last 3 tokens predict the next): it learns the responses' grammar in 90
    # steps at lr 0.1, and the answers' stopping depends only on what the loss taught it.
    base={"data": "sft", "model": "mlp", "d_model": 32, "batch_size": 32, "lr": 0.1,
          "warmup_steps": 5, "schedule": "cosine", "steps": 90, "gen_tokens": 12},
    causes=(
        Cause(
            id="eos_missing",
            title="The prompt template never appends EOS",
            fault=Fault("the template moved into the shared data module builds [BOS] prompt "
                        "[SEP] response, without the EOS", config={"sft_template": "without_eos"}),
            explanation=(
                "The template builds BOS, prompt, SEP, response, and stops there: no example\n"
                "ever ends with EOS, so the model never saw one and never learnt when an answer\n"
                "is over. It keeps writing plausible words to the token limit. The training\n"
                "loss even looks a little better than last week's (there is no stop to predict,\n"
                "and stopping is the hardest token), while the held-out loss, which does score\n"
                "EOS, is worse than predicting word frequencies. One example, token by token,\n"
                "shows it: no <eos> anywhere in the row."),
            tell="answers never end with EOS; the training loss is normal, the held-out loss "
                 "far above it; the batch holds no EOS token at all (mask ROW shows none)",
            changes=(TEMPLATE_CODE,),
            signal=Tell("mask ROW", eos_in_first_batch(as_input=False, as_label=False)),
            hints=("Read some answers (samples), then one training example token by token "
                   "(mask 0).",
                   "Do the answers ever end? Where in the row is the token that should end an "
                   "example, and is it there at all?")),
        Cause(
            id="eos_unlabelled",
            title="The label mask drops the EOS label: stopping is never learnt",
            fault=Fault("the refactored label mask keeps only word tokens after SEP, so EOS "
                        "never carries a label", config={"sft_labels": "response_words"}),
            explanation=(
                "The examples do end with EOS, but the refactored label mask keeps a label only\n"
                "on word tokens after SEP, so the EOS position is ignored by the loss. The\n"
                "model is never asked to predict the end and never does: answers run to the\n"
                "token limit. In the real world the same thing happens when the pad token is\n"
                "set to the EOS token and the collator masks every pad-id position: the true\n"
                "EOS is masked with the padding. `mask ROW` shows the <eos> as an input with\n"
                "no label."),
            tell="answers never end with EOS; the batch has <eos> in its inputs, yet no position "
                 "has it as a label; prompt positions carry no label",
            changes=(MASK_CODE,),
            signal=Tell("mask ROW", all_of(eos_in_first_batch(as_input=True, as_label=False),
                                           summary_at_least("final_loss", 0.5))),
            hints=("Read some answers (samples), then one training example token by token "
                   "(mask 0).",
                   "Do the answers ever end? Find the end-of-example token in the row: is it "
                   "there, and does the loss see it as a label?")),
        Cause(
            id="prompt_in_loss",
            title="The loss is computed on the prompt too",
            fault=Fault("the refactored label mask labels every token after BOS, prompt "
                        "included", config={"sft_labels": "whole_example"}),
            explanation=(
                "The label mask starts at the first token instead of after SEP, so the loss\n"
                "also asks the model to predict the prompt. Per token that looks like more\n"
                "data, and the training loss looks as healthy as last week's. But the model now\n"
                "spends its capacity predicting prompts, and EOS becomes a far smaller share of\n"
                "the tokens it is trained to predict (the last three tokens of a prompt look\n"
                "just like those of an answer to this model): EOS is never the most likely next\n"
                "token, so greedy answers run to the token limit. The\n"
                "held-out loss on responses is only a little worse, which is why the training\n"
                "curve hides it. `mask ROW` shows labels on prompt positions."),
            tell="answers never end with EOS; the training and held-out losses both look close "
                 "to healthy; prompt positions carry labels (mask ROW: 'in loss' before the "
                 "<sep>)",
            changes=(MASK_CODE,),
            signal=Tell("mask ROW", labels_before_separator),
            hints=("Read some answers (samples), then one training example token by token "
                   "(mask 0).",
                   "Do the answers end? Which positions of the row does the loss see: only "
                   "the answer after the separator, or more?")),
        Cause(
            id="labels_not_shifted",
            title="The targets are not shifted: each position is trained to copy its input",
            fault=Fault("the refactored collator takes the targets from the inputs instead of "
                        "the tokens one step ahead", config={"label_shift": "same_position"}),
            explanation=(
                "A causal LM predicts token t+1 from tokens up to t, so the targets are the\n"
                "inputs shifted one place left. The refactored collator masked the right\n"
                "positions but took the labels from the inputs themselves: every labelled\n"
                "position is trained to output the token it was just given. That is trivial,\n"
                "so the training loss drops to about zero within a few steps (too good to be\n"
                "true: the language's entropy floor is about 1 nat), and the model learns\n"
                "nothing but copying: answers repeat the SEP token forever, and the held-out\n"
                "loss, scored on real next tokens, is enormous. `mask ROW`: each label equals\n"
                "the input on its own line."),
            tell="training loss near zero, far below the entropy floor, within a few steps; "
                 "held-out loss enormous; answers repeat one token; each label equals its own "
                 "position's input",
            changes=(COLLATOR_CODE,),
            signal=Tell("plot loss", summary_at_most("final_loss", 0.1)),
            hints=("Plot the training loss (plot loss) and compare it with the held-out loss; "
                   "then look at one example token by token (mask 0).",
                   "Can a loss go below the language's entropy floor? In the row, how does "
                   "each label relate to the inputs around it?")),
    ),
    fixes=(
        Fix("append_eos", "Template: end every example with EOS",
            config={"sft_template": "with_eos"}),
        Fix("label_response_and_eos", "Label mask: the response and its EOS, nothing else",
            config={"sft_labels": "response_and_eos"}),
        Fix("shift_targets", "Collator: targets are the tokens one step ahead of the inputs",
            config={"label_shift": "one_ahead"}),
        Fix("lower_lr", "Divide the learning rate by 10", scale={"lr": 0.1}),
        Fix("block_repeats", "Block repeated 3-grams in the answers (no_repeat_ngram=3)",
            config={"no_repeat_ngram": 3}),
    ),
    # Held-out loss (response words and EOS, built and scored by the grader's own pipeline) at
    # least 30% of the way from the unigram baseline (2.5274) to the entropy floor (1.0284): <=
    # 2.078. The MLP cannot count the words it has written, so it cannot know the stop hazard
    # exactly and stays well above the floor. Measured on seeds 100-109 with each settings
    # decoy: healthy 0.39-0.64 of the way, 81-100% of answers stop; lr / 10 (the trap) 0.11-0.20
    # even on a healthy run. The EOS causes end below the unigram baseline's level (no answer
    # stops); prompt_in_loss learns about as well as healthy, yet no answer stops; unshifted
    # targets: hundreds of nats.
    criterion=Criterion(min_learnt=0.3, baselines=(1.0284, 2.5274), min_stop_rate=0.5),
    resolves={"eos_missing": ("append_eos",),
              "eos_unlabelled": ("label_response_and_eos",),
              "prompt_in_loss": ("label_response_and_eos",),
              "labels_not_shifted": ("shift_targets",)},
    harms=("lower_lr",),
    generates_text=True,
    code=("sft_template", "sft_labels", "label_shift"),
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "weight_decay",
            "batch_size", "grad_accum_steps", "decode", "temperature", "top_k", "top_p",
            "repetition_penalty", "no_repeat_ngram"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Warm up over 10 steps instead of 5", {"warmup_steps": 10}),
        Change("Add weight decay 0.01", {"weight_decay": 0.01}),
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change(TEMPLATE_CODE), Change(MASK_CODE), Change(COLLATOR_CODE), Change(TOKENS_CODE),
    ),
    interview_question="In SFT, which tokens should the loss be computed on, and what goes "
                       "wrong when the label mask is off?",
    debrief=(
        "Interview answer: in SFT the loss belongs on the response tokens and on the EOS that\n"
        "ends them; prompt and padding positions get the ignore index (-100). Targets are the\n"
        "inputs shifted left by one (HF models shift inside the model when you pass\n"
        "labels=input_ids; a collator that also shifts, or one that never does, breaks it).\n"
        "How to check, before any long run: decode one collated example back to tokens and\n"
        "print input, label and mask side by side. Then:\n"
        "- no EOS in the template, or EOS masked (pad_token = eos_token with every pad-id\n"
        "  position masked is the classic): the model never learns to stop;\n"
        "- loss on the prompt: the training loss looks better, the answers get worse (the\n"
        "  model also learns to write prompts, and stopping is diluted);\n"
        "- labels not shifted (or shifted twice): a loss near zero, below the language's\n"
        "  entropy floor, is not a great model but a copying one.\n"
        "A lower lr or a different decoding setting changes none of this: the loss was asked\n"
        "the wrong question."),
)
