"""repetitive_decoding — generated text loops. Decoding settings, the model, or the KV cache?"""
from sim.faults import StaleKVCache
from sim.scenario import Cause, Criterion, Fault, Fix, Scenario

SCENARIO = Scenario(
    id="repetitive_decoding",
    title="Generation repeats itself",
    difficulty="medium",
    tags=("decoding", "inference", "kv-cache", "generation"),
    story=(
        "A small transformer language model is trained on a toy language (each word depends on\n"
        "the two before it) and then asked to continue 16 short prompts, 20 tokens each, with\n"
        "greedy decoding and a repetition penalty of 1.3. The samples came back stuck in loops:\n"
        "the same two or three words over and over (\"8 5 8 5 8 5 ...\"). A teammate touched\n"
        "'the training and generation scripts' this week and doesn't remember what exactly.\n"
        "Find out why the text repeats itself and fix the cause: healthy text is varied and\n"
        "follows the grammar."),
    base={"vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 64,
          "steps": 150, "warmup_steps": 10, "schedule": "cosine", "track_memory": False,
          "decode": "greedy", "repetition_penalty": 1.3, "gen_tokens": 20},
    causes=(
        Cause(
            id="greedy_no_penalty",
            title="Plain greedy decoding: nothing stops the argmax from looping",
            fault=Fault("repetition_penalty reset from 1.3 to 1.0 (greedy decoding stays)",
                        config={"repetition_penalty": 1.0}),
            explanation=(
                "The model is fine. Greedy decoding always takes the single most likely next word,\n"
                "and in this language the next word depends only on the last two, so greedy text\n"
                "is a deterministic walk over word pairs: the moment a pair comes back, every word\n"
                "after it repeats too, forever. Real LMs do the same (Holtzman et al., 'The Curious\n"
                "Case of Neural Text Degeneration'): the argmax path is a high-probability loop.\n"
                "Sampling (temperature, top-p), a repetition penalty, or n-gram blocking breaks it."),
            tell="low loss and grammatical loops (every transition valid); sampled text is "
                 "varied and just as grammatical; KV cache on or off makes no difference"),
        Cause(
            id="undertrained",
            title="The model is undertrained: training stopped far too early",
            fault=Fault("steps cut from 150 to 20 (an early checkpoint got exported)",
                        config={"steps": 20}),
            explanation=(
                "The model never learned the language: its loss stopped near 2.1 nats where a\n"
                "trained model reaches about 1.1 (the language's own entropy is 0.9). An early\n"
                "model knows little more than which words are common and which follow the last one,\n"
                "so its argmax falls into the same short cycle from any prompt, and the\n"
                "repetition penalty cannot pull it out. Sampling hides the loops but not the\n"
                "ignorance: the text becomes ungrammatical noise. No decoding setting helps; only\n"
                "training does."),
            tell="loss curve ends far above the floor; sampled or n-gram-blocked text breaks the "
                 "grammar; every prompt ends in the same loop"),
        Cause(
            id="stale_kv_cache",
            title="Decoding bug: the KV cache never stores the generated tokens",
            fault=Fault("the decode loop passes the prompt's KV cache to every step instead of "
                        "the updated one", callbacks=(StaleKVCache,)),
            explanation=(
                "Each generated token's keys and values were computed and then thrown away: every\n"
                "step attended over the prompt plus the current token, at the same position. The\n"
                "model never saw its own last two words, which is exactly what this language needs,\n"
                "so it predicted from the current word alone and fell into short cycles. Training\n"
                "was healthy; re-reading the whole prefix each step (no cache) gives fluent text,\n"
                "and that mismatch is the standard test for a cache bug."),
            tell="low loss, yet greedy text with kv_cache=false differs from text with the "
                 "cache, and only the cached text loops; sampled text is ungrammatical"),
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
        Fix("no_kv_cache", "Decode without the KV cache (re-read the prefix every step)",
            config={"kv_cache": False}),
        Fix("store_kv", "Keep each step's keys and values in the cache",
            repairs=(StaleKVCache,)),
    ),
    criterion=Criterion(max_final_loss=1.45, max_repeat_rate=0.3, max_longest_loop=9,
                        min_valid_rate=0.8),
    resolves={
        "greedy_no_penalty": ("sample", "nucleus", "repetition_penalty", "no_repeat_ngram"),
        "undertrained": ("train_longer",),
        "stale_kv_cache": ("no_kv_cache", "store_kv"),
    },
    generates_text=True,
    interview_question="Your model's generations repeat themselves or make no sense. "
                       "What do you check?",
    debrief=(
        "TODO"),
)
