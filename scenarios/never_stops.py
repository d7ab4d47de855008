"""never_stops — a fine-tuned chat model runs to the token limit, or stops before it says anything.

One cause is in training (the collator's labels, behind a pad-token setting that is harmless on
its own), two are at inference (the stopping criterion, the chat template); each came with a
setting that is harmless on its own, and each such setting is a decoy in other incidents. Each shows in P(EOS):
where the model thinks an answer ends, and what the server does with it.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, any_of, summary_at_least, summary_at_most

PAD_AS_EOS = Change("Pad with the EOS token (the new tokenizer has no pad token)",
                    {"pad_token": "eos"})
TOP_K = Change("Keep the 50 most likely tokens when sampling", {"top_k": 50})
TEMPERATURE = Change("Set the generation config's temperature to 0.7", {"temperature": 0.7})
COLLATOR_CODE = "Switched to the shared data collator"
STOPPING_CODE = "Refactored the stopping criteria"
TEMPLATE_CODE = "Moved the chat template into the inference server"

SCENARIO = Scenario(
    id="never_stops",
    title="The chat model never stops (or stops at once)",
    difficulty="medium",
    tags=("sft", "inference", "eos", "chat-template", "decoding"),
    story=(
        "A small transformer, pretrained on a toy language, is fine-tuned on prompt/reply pairs\n"
        "(SFT: [BOS] prompt [SEP] reply [EOS], only the reply and its EOS supervised; every\n"
        "reply has four words). Then it answers 16 held-out prompts, greedily, with a limit of\n"
        "10 new tokens. Last release it answered in about four words and stopped. Now the\n"
        "answers run to the limit, or end before they say anything. The team changed 'the\n"
        "training data pipeline and the server' this week. Find out why and fix the cause."),
    # Pretraining (the team's transformer checkpoint, sim/pretrained.py) then 150 SFT steps at lr
    # 7e-3, cosine after a 10-step warmup. At lr 2e-2 without warmup 2 of 40 keyed healthy
    # incidents learnt too little (0.12 and 0.22 of the way to the floor: too large a step
    # straight from the checkpoint; 2e-2 with warmup and 1e-2 without left such seeds at
    # 0.16-0.28). Now 40 keyed training seeds (review-h) reach 0.38-0.62 of the way, 0.875-1.0
    # of the answers stop, after 3.4-5.9 words, with P(EOS) 0.31-0.99 where a reply ends.
    base={"base_model": "pretrained", "data": "sft", "seq_len": 12,
          "sft_lengths": "four_word_answers", "vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 32, "steps": 150, "lr": 7e-3,
          "warmup_steps": 10, "schedule": "cosine", "decode": "greedy", "gen_tokens": 10},
    causes=(
        Cause(
            id="eos_masked_as_padding",
            title="Padding with EOS, the collator drops every label equal to the pad id: EOS too",
            fault=Fault("pad_token = eos_token, and the shared collator sets labels equal to the "
                        "pad id to -100", config={**PAD_AS_EOS.config,
                                                  "padding_labels": "by_pad_id"}),
            explanation=(
                "The tokenizer has no pad token, so padding used EOS. The shared collator then\n"
                "did what generic LM collators do: every label equal to the pad id became -100\n"
                "(ignored). Every real EOS at the end of a reply was ignored with the padding, so\n"
                "the model was never taught to end an answer: P(EOS) where a reply ends stays\n"
                "near zero and greedy decoding writes words until the limit. The training loss\n"
                "even looks a little better than last week's: the hardest-to-predict token is\n"
                "missing from it. Use a distinct pad token, or mask padding by position (the\n"
                "attention mask), never by id."),
            tell="P(EOS) at the end of held-out replies near 0; no answer contains EOS; the "
                 "batch's labels never hold EOS (2)",
            changes=(PAD_AS_EOS.log, COLLATOR_CODE),
            signal=Tell("eos", all_of(summary_at_most("p_eos_reply_end", 0.2),
                                      summary_at_most("eos_rate", 0.1))),
            hints=("Look at where the model puts its probability of EOS (eos).",
                   "Teacher-forced on held-out pairs, is EOS likely where a reply ends? Does "
                   "any answer contain EOS?")),
        Cause(
            id="wrong_stop_token",
            title="Decoding stops at the wrong token id: the model's EOS is ignored",
            fault=Fault("the refactored stopping criterion compares with the separator id "
                        "instead of EOS (the same change set the temperature, unused by greedy)",
                        config={**TEMPERATURE.config, "stop_check": "sep"}),
            explanation=(
                "The model learned to end its answers: it writes EOS after about four words.\n"
                "The refactored stopping criterion checked for another special token's id, so\n"
                "the server never saw the end and kept decoding past it, where the model has\n"
                "nothing left to say. The tell is in the text itself: EOS sits in the middle\n"
                "of the answers. Stop on the id the model was trained to write (check\n"
                "generation_config.eos_token_id against the tokenizer and the chat template's\n"
                "end-of-turn token)."),
            tell="the answers contain EOS after a few words and go on to the limit; P(EOS) at "
                 "the end of held-out replies is high",
            changes=(TEMPERATURE.log, STOPPING_CODE),
            signal=Tell("samples, eos", all_of(summary_at_least("eos_rate", 0.8),
                                               summary_at_most("stop_rate", 0.2))),
            hints=("Read the answers as the server returned them (samples).",
                   "Does the model ever write EOS? What does the server do after it?")),
        Cause(
            id="template_mismatch",
            title="The chat template at inference differs from training: no reply marker",
            fault=Fault("the server's template builds [BOS] prompt without the [SEP] that "
                        "starts a reply in training (the same change set top_k, unused by "
                        "greedy)", config={**TOP_K.config, "chat_template": "no_reply_marker"}),
            explanation=(
                "In training every reply followed [SEP]. The server's template left it out (the\n"
                "HF equivalent: apply_chat_template without add_generation_prompt=True), so the\n"
                "model was asked to continue the prompt, not to answer it. Nothing in training\n"
                "covered that position: depending on the run, the model closes the turn almost\n"
                "at once, or never finds the end of a reply it does not know it started. Render the prompt exactly as in training, marker included, and\n"
                "compare the token ids of a training example with what the server feeds."),
            tell="the prompt as fed lacks the SEP that every training example has before the "
                 "reply; the model, which puts P(EOS) where held-out replies end, either closes "
                 "every answer within two words or never writes EOS at all",
            changes=(TOP_K.log, TEMPLATE_CODE),
            signal=Tell("samples, eos", all_of(
                summary_at_least("p_eos_reply_end", 0.1),
                any_of(all_of(summary_at_most("answer_words", 2.4),
                              summary_at_least("stop_rate", 0.5)),
                       summary_at_most("eos_rate", 0.1)))),
            hints=("Read the prompts and answers exactly as the server fed and returned them "
                   "(samples).",
                   "How many words does an answer have? Compare the prompt's tokens with the "
                   "training format in the story.")),
    ),
    fixes=(
        Fix("supervise_eos", "Mask padding by position in the collator, so EOS keeps its label",
            config={"padding_labels": "by_position"}),
        Fix("own_pad_token", "Give the tokenizer a pad token of its own",
            config={"pad_token": "pad"}),
        Fix("stop_at_eos", "Stop decoding at the EOS id", config={"stop_check": "eos"}),
        Fix("reply_marker", "Render the reply marker at the end of the inference prompt",
            config={"chat_template": "reply_marker"}),
        Fix("cap_tokens", "Cap answers at 8 new tokens", config={"gen_tokens": 8}),
        Fix("lower_temperature", "Lower the temperature to 0.5", config={"temperature": 0.5}),
    ),
    # Healthy (40 keyed training seeds, see base): 0.875-1.0 of the answers stop, after 3.4-5.9
    # words on average. Padding masked and wrong stop id: no answer stops; no reply marker:
    # answers of 0-2.2 words, or (some seeds) no EOS at all. Held-out loss: a quarter of the
    # way from the unigram baseline to the floor (healthy runs reach 0.38-0.62 of it; see
    # tests/test_learning.py's LOWER_BAR).
    criterion=Criterion(min_learnt=0.25, baselines=(0.7697, 2.356), min_stop_rate=0.4,
                        min_answer_words=2.5),
    resolves={
        "eos_masked_as_padding": ("supervise_eos", "own_pad_token"),
        "wrong_stop_token": ("stop_at_eos",),
        "template_mismatch": ("reply_marker",),
    },
    generates_text=True,
    code=("sft_labels", "padding_labels", "chat_template", "stop_check"),
    recipe=("decode", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram",
            "kv_cache", "pad_token", "lr", "warmup_steps", "schedule"),
    fixed=FIXED_REASONS,
    decoys=(
        PAD_AS_EOS, TOP_K, TEMPERATURE,
        Change(COLLATOR_CODE), Change(STOPPING_CODE), Change(TEMPLATE_CODE),
    ),
    interview_question="Your fine-tuned model's generations never stop (or stop at once). "
                       "What do you check?",
    debrief=(
        "Interview answer: ask whether the MODEL knows where an answer ends, then whether the\n"
        "SERVER listens and asks the right question.\n"
        "1. DOES THE MODEL PREDICT EOS? Teacher-force held-out pairs in the training format and\n"
        "   read P(EOS) at the last position. Near zero: EOS was never a training target.\n"
        "   Classic causes: pad_token = eos_token with a collator that masks labels by the pad\n"
        "   id (EOS masked with the padding); SFT data whose replies lack EOS; truncation that\n"
        "   cuts every EOS. Fix the labels (mask padding by position / attention mask, or a\n"
        "   distinct pad token) and retrain.\n"
        "2. DOES THE LOOP STOP ON IT? If answers contain EOS and go on, the stopping criterion\n"
        "   checks another id (generation_config.eos_token_id vs the chat end-of-turn token).\n"
        "3. IS THE PROMPT THE TRAINING FORMAT? The inference template must match training,\n"
        "   including the marker that opens the assistant's turn (add_generation_prompt);\n"
        "   otherwise the model continues the prompt, or closes the turn at once.\n"
        "Loss masking in SFT: supervise the reply and its EOS, never the prompt or the padding.\n"
        "A max-token cap only hides a model that cannot stop."),
)
