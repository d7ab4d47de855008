"""repetitive_decoding — generated text loops. Decoding settings, the model, or the KV cache?"""
from ..sim.team_code import EarlyExport
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, kv_cache_changes_text, summary_at_least, \
    summary_at_most

DECODING_CODE = "Refactored the decoding loop"
EXPORT_CODE = "Exported the model checkpoint for the release"
CONFIG_CLEANUP = "Cleaned up the generation config"

SCENARIO = Scenario(
    id="repetitive_decoding",
    title="Generation repeats itself",
    difficulty="medium",
    tags=("decoding", "inference", "kv-cache", "generation"),
    story=(
        "A small transformer language model is trained on a toy language (each word depends on\n"
        "the two before it) and then continues 16 short prompts, 20 tokens each, with the\n"
        "generation settings of the last release. Last release the samples were fine. Now they\n"
        "are stuck in loops: the same two or three words over and over (\"8 5 8 5 8 5 ...\").\n"
        "A teammate touched 'the training and generation scripts' this week and doesn't\n"
        "remember what exactly. Find out why the text repeats itself and fix the cause:\n"
        "healthy text is varied and follows the grammar."),
    # 10 words: greedy argmax cycles are short (1-3 words); 150 steps are about what this tiny
    # model needs to learn the two-word dependence; prompt 4 + 20 tokens stays within the 24
    # positions it was trained on. The release decodes greedily with a repetition penalty.
    base={"vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 64,
          "steps": 150, "warmup_steps": 10, "schedule": "cosine",
          "decode": "greedy", "repetition_penalty": 1.3, "gen_tokens": 20},
    causes=(
        Cause(
            id="greedy_no_penalty",
            title="Plain greedy decoding: nothing stops the argmax from looping",
            fault=Fault("the refactored decoding loop applies the repetition penalty only when "
                        "sampling (the generation config still says 1.3, and it decodes greedily)",
                        config={"logits_processing": "penalty_when_sampling"}),
            explanation=(
                "The model is fine. Greedy decoding always takes the most likely next word,\n"
                "and in this language the next word depends only on the last two, so greedy\n"
                "text is a deterministic walk over word pairs: the moment a pair comes back,\n"
                "every word after it repeats too, forever. Real LMs do the same (Holtzman et al.,\n"
                "'The Curious Case of Neural Text Degeneration'): the argmax path is a\n"
                "high-probability loop. The release relied on the repetition penalty to break\n"
                "it, and the refactored decoding code applies it only when sampling, though the\n"
                "config still says 1.3 and the release decodes greedily (the `code` probe shows\n"
                "the condition). Sampling (temperature, top-p), a penalty that is applied, or\n"
                "n-gram blocking breaks it."),
            tell="low loss and grammatical loops (every transition valid); sampled text is "
                 "varied and just as grammatical; KV cache on or off makes no difference",
            changes=(DECODING_CODE,),
            signal=Tell("table, samples", all_of(summary_at_most("final_loss", 1.45),
                                                 summary_at_least("valid_rate", 0.95))),
            hints=('Read the end of the log table (table) for the loss, then compare samples with samples decode=sample.',
                   'Is the loss low, and are the loops grammatical? Does sampled text come out varied and grammatical, and does kv_cache=false change anything?')),
        Cause(
            id="undertrained",
            title="The model is undertrained: training stopped far too early",
            fault=Fault("the release exported the checkpoint saved after 20 of the 150 steps",
                        callbacks=(EarlyExport,)),
            explanation=(
                "The model never learned the language: its held-out loss stopped near 2.15 nats,\n"
                "barely below the 2.27 of predicting word frequencies, where a trained model\n"
                "reaches about 1.1 (the floor, the true generator's own loss, is 0.96). An early\n"
                "model knows little more than which words are common and which tend to follow\n"
                "the last one, so its argmax falls into a short cycle (often the same one for\n"
                "every prompt) that the repetition penalty cannot break. Sampling hides the loops\n"
                "but not the ignorance: the text turns into ungrammatical noise. No decoding\n"
                "setting helps; only training does."),
            tell="loss curve ends far above the floor; sampled or n-gram-blocked text breaks the "
                 "grammar; many prompts end in the same short loop",
            changes=(EXPORT_CODE,),
            signal=Tell("plot loss", summary_at_least("final_loss", 1.6)),
            hints=('Plot the loss (plot loss), then read a few samples with sampling on (samples decode=sample).',
                   'Does the loss end near the floor or far above it? Is sampled text grammatical, and do many prompts fall into the same loop?')),
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
                "language needs, so it predicted from one word alone and fell into short cycles.\n"
                "Training was healthy; re-reading the whole prefix each step (no cache) gives\n"
                "fluent text, and that mismatch is the standard test for a cache bug."),
            tell="low loss, yet greedy text with kv_cache=false differs from text with the "
                 "cache, and only the cached text loops; sampled text is ungrammatical",
            changes=(DECODING_CODE,),
            signal=Tell("samples kv_cache=false", kv_cache_changes_text),
            hints=('Compare samples with samples kv_cache=false.',
                   'With a low loss, does turning the cache off change the greedy text, and which of the two loops?')),
    ),
    fixes=(
        Fix("sample", "Sample instead of greedy, temperature 0.8",
            config={"decode": "sample", "temperature": 0.8}),
        Fix("nucleus", "Nucleus (top-p) sampling with top_p=0.9",
            config={"decode": "sample", "top_p": 0.9}),
        Fix("repetition_penalty", "Set the repetition penalty to 1.3",
            config={"repetition_penalty": 1.3}),
        Fix("no_repeat_ngram", "Block repeated 3-grams (no_repeat_ngram=3)",
            config={"no_repeat_ngram": 3}),
        Fix("lower_temperature", "Lower the temperature to 0.5", config={"temperature": 0.5}),
        Fix("train_longer", "Train for the full 150-step schedule", config={"steps": 150}),
        Fix("final_checkpoint", "Export the checkpoint of the last step",
            repairs=(EarlyExport,)),
        Fix("apply_penalty", "Apply the configured repetition penalty in the decoding loop",
            config={"logits_processing": "penalty_then_ban"}),
        Fix("no_kv_cache", "Decode without the KV cache (re-read the prefix every step)",
            config={"kv_cache": False},
            cost="without the cache every token re-reads the whole prefix: decoding cost grows "
                 "with the square of the length, and the cache bug is still there"),
        Fix("store_kv", "Keep each step's keys and values in the cache",
            config={"kv_cache_update": "store_each_step"}),
    ),
    # Measured on seeds 0-9: healthy runs repeat <= 0.24 of their 3-grams with loops <= 7.3
    # tokens and 100% grammatical greedy text (sampled: >= 0.94); the broken ones repeat >= 0.45
    # with loops >= 11.9, or are < 0.6 grammatical under sampling. Held-out loss: at least 60% of
    # the way from the unigram baseline (2.2730) to the entropy floor (0.9565), i.e. <= 1.483;
    # healthy 1.08-1.16 (benchmarks/learning.py), undertrained ~2.2.
    criterion=Criterion(min_learnt=0.6, baselines=(0.9565, 2.2730), max_repeat_rate=0.35,
                        max_longest_loop=9, min_valid_rate=0.8),
    resolves={
        "greedy_no_penalty": ("sample", "nucleus", "no_repeat_ngram", "apply_penalty"),
        "undertrained": ("final_checkpoint",),
        "stale_kv_cache": ("no_kv_cache", "store_kv"),
    },
    generates_text=True,
    code=("logits_processing", "kv_cache_update"),
    recipe=("decode", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram",
            "kv_cache", "lr", "warmup_steps", "schedule"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 50 steps", {"eval_every": 50}),
        Change("Keep the 50 most likely tokens when sampling", {"top_k": 50}),
        Change(DECODING_CODE), Change(EXPORT_CODE), Change(CONFIG_CLEANUP),
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
        "Here: greedy loops on a trained model are fixed by decoding settings; loops from an\n"
        "undertrained model turn into nonsense under sampling; loops that vanish without the\n"
        "KV cache are a bug in the decoder."),
)
