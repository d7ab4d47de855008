"""repetitive_decoding — generated text loops. Decoding settings, the model, or the KV cache?"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, kv_cache_changes_text, summary_at_least, \
    summary_at_most

DECODING_CODE = "Refactored the decoding loop"
LAUNCH_CODE = "Moved the training job onto the shared launch template"
CONFIG_CLEANUP = "Cleaned up the generation config"

SCENARIO = Scenario(
    id="repetitive_decoding",
    title="Generation repeats itself",
    difficulty="medium",
    tags=("decoding", "inference", "kv-cache", "generation"),
    story=(
        "A small transformer language model is trained on a toy language (each word depends on\n"
        "the two before it) and then continues 16 short prompts, 20 tokens each, with the\n"
        "generation settings of the last release: sampling at temperature 0.8. Last release the\n"
        "samples were fine. Now they are stuck in loops: the same two or three words over and\n"
        "over (\"8 5 8 5 8 5 ...\"). A teammate touched 'the training and generation scripts'\n"
        "this week and doesn't remember what exactly. Find out why the text repeats itself and\n"
        "fix the cause: healthy text is varied and follows the grammar."),
    # 10 words: argmax cycles are short (1-3 words); 150 steps are about what this tiny model
    # needs to learn the two-word dependence; prompt 4 + 20 tokens stays within the 24
    # positions it was trained on. The release samples: greedy text from a healthy model loops
    # on some models and not on others, so only sampled text separates healthy from broken.
    base={"vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 64,
          "steps": 150, "warmup_steps": 10, "schedule": "cosine",
          "decode": "sample", "temperature": 0.8, "gen_tokens": 20},
    causes=(
        Cause(
            id="sampling_ignored",
            title="The decoding code never samples: every token is the argmax",
            fault=Fault("the refactored token choice tests decode against 'sampling' while the "
                        "config says 'sample', so it always takes the argmax",
                        config={"token_choice": "by_decode_name"}),
            explanation=(
                "The model is fine and the config asks for sampling, but the refactored code that\n"
                "picks the next token compares the decode setting with the wrong name ('sampling'\n"
                "instead of 'sample'), so every run falls through to the argmax (the `code` probe\n"
                "shows the test). Greedy decoding always takes the most likely next word, and in\n"
                "this language the next word depends only on the last two, so greedy text is a\n"
                "deterministic walk over word pairs: the moment a pair comes back, every word\n"
                "after it repeats, forever (Holtzman et al., 'The Curious Case of Neural Text\n"
                "Degeneration', on the argmax path as a high-probability loop). The same family\n"
                "of bug ships in real code: a temperature or top-p that is silently ignored\n"
                "because sampling was never switched on. Changing temperature or top-p cannot\n"
                "help while the code ignores them; blocking repeated n-grams hides the loops of\n"
                "a decoder that is still greedy."),
            tell="low loss and grammatical loops (every transition valid); changing the "
                 "temperature or top-p changes nothing; KV cache on or off makes no difference",
            changes=(DECODING_CODE,),
            signal=Tell("table, samples", all_of(summary_at_most("final_loss", 1.45),
                                                 summary_at_least("valid_rate", 0.95))),
            hints=("Read the end of the log table (table) for the loss, then compare samples "
                   "with samples temperature=1.5, and read the code.",
                   "Is the loss low, and are the loops grammatical? Does a different temperature "
                   "change the text at all, and what does the code do with the decode setting?")),
        Cause(
            id="undertrained",
            title="The model is undertrained: training stopped far too early",
            fault=Fault("the training job, moved onto the shared launch template, ends when the "
                        "template's 20-step budget (a smoke test's) is used up, not after the "
                        "recipe's 150 steps", config={"step_budget": "template_steps"}),
            explanation=(
                "Training now ends after `LAUNCH.get(\"max_steps\", config.steps)` steps, and the\n"
                "launch template, written for a smoke test, sets max_steps to 20: the run stopped\n"
                "after 20 of the recipe's 150 steps (the log ends there; the `code` probe shows\n"
                "the check). The model never learned the language: its loss stopped near 2.15 nats,\n"
                "barely below the 2.27 of predicting word frequencies, where a trained model\n"
                "reaches about 1.1 (the floor, the true generator's own loss, is 0.96). An early\n"
                "model knows little more than which words are common and which tend to follow\n"
                "the last one, so its argmax falls into a short cycle (often the same one for\n"
                "every prompt). Sampled, its text is ungrammatical noise; blocking repeats hides\n"
                "the loops but not the ignorance. No decoding setting helps; only training does."),
            tell="loss curve ends far above the floor; the sampled text breaks the grammar",
            changes=(LAUNCH_CODE,),
            signal=Tell("plot loss", summary_at_least("final_loss", 1.6)),
            hints=("Plot the loss (plot loss), then read a few samples.",
                   "Does the loss end near the floor or far above it? Is the text grammatical?")),
        Cause(
            id="stale_kv_cache",
            title="Decoding bug: the KV cache never stores the generated tokens",
            fault=Fault("the refactored cache update stores keys and values only at the prompt "
                        "(prefill) and returns the extended ones without keeping them",
                        config={"kv_cache_update": "store_on_prefill"}),
            explanation=(
                "Each generated token's keys and values were computed and then thrown away: every\n"
                "step attended over the prompt plus the newest token, at one fixed position.\n"
                "The model never saw the word before the newest one, which is exactly what this\n"
                "language needs, so it predicted from one word alone: ungrammatical text that\n"
                "falls into short cycles.\n"
                "Training was healthy; re-reading the whole prefix each step (no cache) gives\n"
                "fluent text, and that mismatch is the standard test for a cache bug."),
            tell="low loss, yet text with kv_cache=false differs from text with the cache, and "
                 "only the cached text loops and breaks the grammar",
            changes=(DECODING_CODE,),
            signal=Tell("samples kv_cache=false", kv_cache_changes_text),
            hints=("Compare samples with samples kv_cache=false.",
                   "With a low loss, does turning the cache off change the text, and which of "
                   "the two loops?")),
    ),
    fixes=(
        Fix("higher_temperature", "Sample at a higher temperature (1.2)",
            config={"temperature": 1.2}),
        Fix("no_repeat_ngram", "Block repeated 3-grams (no_repeat_ngram=3)",
            config={"no_repeat_ngram": 3},
            cost="blocking repeats hides the loops of a decoder that still never samples: "
                 "every token is still the argmax, and the ban also forbids legitimate repeats"),
        Fix("train_longer", "Train for the full 150-step schedule", config={"steps": 150}),
        Fix("recipe_step_budget", "End training when the recipe's steps are done, not the "
            "launch template's", config={"step_budget": "recipe_steps"}),
        Fix("sample_as_configured", "Compare the decode setting with 'sample', the value the "
            "config uses", config={"token_choice": "by_decode_setting"}),
        Fix("no_kv_cache", "Decode without the KV cache (re-read the prefix every step)",
            config={"kv_cache": False},
            cost="without the cache every token re-reads the whole prefix: decoding cost grows "
                 "with the square of the length, and the cache bug is still there"),
        Fix("store_kv", "Keep each step's keys and values in the cache",
            config={"kv_cache_update": "store_each_step"}),
    ),
    # Thresholds from runs on training seeds 2000-2059 and 3000-3059: sampled text from a
    # healthy model repeats <= 0.14 of its 3-grams with loops <= 5.4 tokens and >= 0.87 of its
    # transitions grammatical (>= 0.72 sampled at 1.2); the argmax text of the same models
    # repeats >= 0.26 with loops >= 6.5; a stale cache's text is <= 0.46 grammatical. Greedy
    # text cannot be the release's: on about 5% of healthy models it loops as badly as a broken
    # decoder. A lower temperature or top-p 0.9 makes a healthy model loop on some seeds and
    # not on others, so neither is offered.
    # Held-out loss: at least 60% of the way from the unigram baseline (2.2730) to the entropy
    # floor (0.9565), i.e. <= 1.483; healthy 1.08-1.16 (benchmarks/learning.py).
    criterion=Criterion(min_learnt=0.6, baselines=(0.9565, 2.2730), max_repeat_rate=0.2,
                        max_longest_loop=6.1, min_valid_rate=0.6),
    resolves={
        "sampling_ignored": ("sample_as_configured", "no_repeat_ngram"),
        "undertrained": ("recipe_step_budget",),
        "stale_kv_cache": ("no_kv_cache", "store_kv"),
    },
    generates_text=True,
    code=("token_choice", "kv_cache_update", "step_budget"),
    recipe=("decode", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram",
            "kv_cache", "lr", "warmup_steps", "schedule"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 50 steps", {"eval_every": 50}),
        Change("Keep the 50 most likely tokens when sampling", {"top_k": 50}),
        Change(DECODING_CODE), Change(LAUNCH_CODE), Change(CONFIG_CLEANUP),
    ),
    interview_question="Your model's generations repeat themselves or make no sense. "
                       "What do you check?",
    debrief=(
        "Interview answer: separate the model from the decoder, then the decoder's settings\n"
        "from its code.\n"
        "1. IS THE MODEL GOOD? Look at the loss curve and held-out loss/perplexity against a\n"
        "   baseline, then sample at temperature 1. If sampled text is also wrong, the model\n"
        "   never learned the data and no decoding knob will fix it: train longer or better.\n"
        "2. DECODING SETTINGS. Greedy (and beam) search on open-ended text loops: the argmax\n"
        "   path is a high-probability cycle. Temperature does nothing under greedy. Remedies:\n"
        "   sampling with temperature / top-p / top-k; a repetition penalty (CTRL style: it\n"
        "   only asks whether a token appeared, so too strong hurts fluency and in a small\n"
        "   vocabulary it stops acting once every token has appeared); no-repeat-n-gram (a\n"
        "   hard ban, which also blocks legitimate repeats such as names).\n"
        "3. STOPPING. A model that never emits EOS, or a loop that ignores it (wrong eos id,\n"
        "   pad == eos masked out in training, SFT data without EOS), keeps writing after the\n"
        "   answer is done, and that tail is where loops live.\n"
        "4. THE DECODER'S CODE. Decode the same prompt greedily with and without the KV cache:\n"
        "   the tokens must match. If they differ, suspect the cache update, the position ids\n"
        "   of new tokens (rotary offset not advanced), or the attention mask of the new token.\n"
        "   Check the prompt format / chat template and tokenizer too.\n"
        "5. SETTINGS THAT DO NOTHING. If changing the temperature or top-p does not change the\n"
        "   text at all, the decoder is not sampling, whatever the config says: read the code\n"
        "   that picks the token (in Hugging Face, sampling settings are ignored unless\n"
        "   do_sample is on).\n"
        "Here: argmax loops from a healthy model mean the sampler never ran; loops in\n"
        "ungrammatical text from an undertrained model need training, not decoding knobs;\n"
        "loops that vanish without the KV cache are a bug in the decoder."),
)
