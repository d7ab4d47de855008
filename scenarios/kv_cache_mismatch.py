"""kv_cache_mismatch — the server's answers drift off the grammar. Where is the cache wrong?

Every cause is another way to write one function of the server's KV-cache bookkeeping: the
rotary positions of cached tokens and of a left-padded row's tokens (sim/serving.py), how the
cache grows (sim/models.py), and which cache a request starts from (sim/serving.py). The
training is the same healthy one in every incident.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, cache_diverges_first_at, prompts_diverge_at

SPLIT_CODE = "Split the server's prefill and decode into two functions"
STORE_CODE = "Moved the KV-cache update into the decode loop"
LIFETIME_CODE = "Allocate the KV cache once, when the server starts"
PADDING_CODE = "Compute the rotary positions of padded rows in the server, not in the client"

SCENARIO = Scenario(
    id="kv_cache_mismatch",
    title="The server's generations differ from the model's",
    difficulty="medium",
    tags=("inference", "kv-cache", "decoding", "serving"),
    story=(
        "A small transformer language model is trained on a toy language (each word depends on\n"
        "the two before it). Offline, its greedy continuations follow the grammar. The team\n"
        "rewrote the inference server to reuse keys and values between decoding steps (a KV\n"
        "cache); 16 prompts of 2 to 4 words arrive as 4 requests of 4 (the shorter prompts of a\n"
        "request left-padded to its longest, padding masked) and each gets 20 greedy tokens.\n"
        "Since the rewrite the server's text differs from the text the model writes offline.\n"
        "Same checkpoint, same settings. Find out why and fix the cause: a healthy server\n"
        "continues every prompt exactly as the model does offline (the same greedy decoding\n"
        "without a cache), and its text follows the grammar."),
    # 200 steps at lr 2e-2 bring this model to a held-out loss of 1.04-1.11 (seeds 0-19), where
    # greedy text is grammatical (0.99-1.00 of transitions from the mixed prompts, seeds 0-19).
    # 120 steps reached 1.14-1.39 on seeds 0-19 but 1.65-1.75 on 5 of 100 learners' incidents
    # (training seeds drawn from their keys), past the bar: no fix could pass them; with 200
    # steps the same 100 incidents end at 1.00-1.31. Decoding is ~50 ms, so every fix here
    # re-decodes one shared training. The prompt lengths (4, 3, 4, 2 in each request,
    # `decoding.PROMPT_LENGTHS`) are the measurement, fixed: (4, 2, 3, 4, 3) left seed 5's
    # healthy text at 0.92 grammatical (one 3-word prompt falls into a loop).
    base={"vocab_size": 14, "d_model": 32, "n_layer": 1, "n_head": 4, "batch_size": 64,
          "steps": 200, "lr": 2e-2, "warmup_steps": 10, "schedule": "cosine",
          "decode": "greedy", "gen_tokens": 20, "requests": 4, "prompt_lengths": "mixed"},
    causes=(
        Cause(
            id="positions_not_advanced",
            title="Cached decoding numbers each new token's position from 0, not after the cache",
            fault=Fault("the decode function computes rotary positions as arange(new tokens) "
                        "instead of starting at the cache length",
                        config={"kv_positions": "in_chunk"}),
            explanation=(
                "Rotary embeddings put a token's position into its query and key, so attention\n"
                "sees how far apart two tokens are. Each prompt was prefilled at its positions\n"
                "(0-3 for four words), but every token fed alone afterwards was rotated as if it\n"
                "sat at position 0: its query saw the prompt 'in its future' and its own\n"
                "history at the wrong distances. The prefill (step 0) matches the uncached model exactly; the very\n"
                "first step that feeds one token differs, for every prompt. Positions of new\n"
                "tokens must continue from the number of tokens already in the cache (HF's\n"
                "cache_position / past_key_values_length)."),
            tell="kvdiff: step 0 agrees; every prompt, the longest of its request too, diverges "
                 "at step 1, the first token fed alone; the cache holds one key per token",
            changes=(SPLIT_CODE,),
            signal=Tell("kvdiff", prompts_diverge_at(1, longest_too=True)),
            hints=("Compare the cached and uncached decodes step by step (kvdiff).",
                   "At which step does each request first differ, and is that the prefill or "
                   "the first token fed alone? Does the cache hold one key per token?")),
        Cause(
            id="kv_appended_twice",
            title="Each decoding step's keys and values are stored in the cache twice",
            fault=Fault("the refactored cache update stores a decoding step's new key/value "
                        "twice", config={"kv_cache_update": "store_step_twice"}),
            explanation=(
                "The refactored cache update returned the right keys and values for the step\n"
                "but stored the new token's key and value twice. Step 1 itself is right (it\n"
                "attends over what was returned), but from step 2 on every earlier token\n"
                "counts twice in the softmax and the cache's length, which sets the next\n"
                "position, runs ahead by one per step. The cache grows by two keys per token:\n"
                "its length is the cheapest check there is."),
            tell="kvdiff: steps 0 and 1 agree, every request diverges at step 2; the cache grows "
                 "by two keys per generated token",
            changes=(STORE_CODE,),
            signal=Tell("kvdiff", cache_diverges_first_at(2, 2, 2, 2)),
            hints=("Compare the cached and uncached decodes step by step (kvdiff), and read the "
                   "keys column.",
                   "At which step does each request first differ? How many keys does the cache "
                   "gain per generated token?")),
        Cause(
            id="cache_not_reset",
            title="Requests share one cache: each request sees the ones before it",
            fault=Fault("the server allocates one KV cache at start-up and never resets it between "
                        "requests", config={"kv_lifetime": "per_server"}),
            explanation=(
                "The cache was allocated once per server, not once per request. The first\n"
                "request was served exactly; every later one prefilled its prompt on top of the\n"
                "keys and values of all the requests before it, so its prompt attended to\n"
                "another conversation and sat at positions far past anything trained. Its very\n"
                "first logits (step 0, the prefill) already differ. A cache belongs to one\n"
                "sequence; sharing work between requests (vLLM's prefix caching) is only safe\n"
                "for an identical token prefix, matched exactly."),
            tell="kvdiff: the first request agrees on every step; every later request differs "
                 "from step 0 and starts with the previous requests' keys in its cache",
            changes=(LIFETIME_CODE,),
            signal=Tell("kvdiff", cache_diverges_first_at(None, 0, 0, 0)),
            hints=("Compare the cached and uncached decodes request by request (kvdiff).",
                   "Is every request wrong, or only some? How many keys does each request's "
                   "cache hold after its prefill?")),
        Cause(
            id="padded_positions_from_cache",
            title="Decoding steps place a left-padded row's new token at the padded length, "
                  "not after the row's own tokens",
            fault=Fault("the prefill numbers each row's real tokens from 0, but a decoding step "
                        "subtracts only the padding among the tokens it feeds (none), so a new "
                        "token's position is the cache length in every row",
                        config={"kv_row_positions": "fed_tokens_mask"}),
            explanation=(
                "A request's shorter prompts are left-padded to its longest. The prefill\n"
                "numbered each row's real tokens from 0, as in training (the positions read off\n"
                "the padding mask), but the decoding step moved a row's positions back only by\n"
                "the padding among the tokens it fed: none. So every new token sat at the cache\n"
                "length, the padded length, in every row: in a row with p pads it sat p\n"
                "positions too far from its own prompt, and rotary attention saw its prompt\n"
                "further back than it was. Rows without padding stay exact; every padded row\n"
                "differs from the first token fed alone (step 1). The text mostly stays\n"
                "grammatical: the next word depends on the two before it, and only the second\n"
                "new token is predicted from a prompt word at the wrong distance (after that\n"
                "both words are new, and right relative to each other). The grammar barely\n"
                "shows it; comparing with the uncached decode does. A row's positions come\n"
                "from its own mask, at every step (HF: position_ids = attention_mask.cumsum(-1)\n"
                "- 1 for the prompt, then the row's own count), never from the shared cache\n"
                "length."),
            tell="kvdiff, prompt by prompt: in every request the longest prompts agree on every "
                 "step; every shorter (left-padded) prompt diverges at step 1",
            changes=(PADDING_CODE,),
            signal=Tell("kvdiff", prompts_diverge_at(1, longest_too=False)),
            hints=("Compare the cached and uncached decodes step by step (kvdiff), and read its "
                   "prompt-by-prompt lines.",
                   "Which prompts differ and which agree, and what do the ones that differ "
                   "have in common? Then read the code that places their tokens.")),
    ),
    fixes=(
        Fix("advance_positions", "Start the positions of new tokens at the cache length",
            config={"kv_positions": "after_cache"}),
        Fix("store_once", "Store each step's keys and values once",
            config={"kv_cache_update": "store_each_step"}),
        Fix("cache_per_request", "Give every request a fresh KV cache",
            config={"kv_lifetime": "per_request"}),
        Fix("row_positions", "Take each row's decoding positions from its own token count "
            "(its padding left out)", config={"kv_row_positions": "whole_mask"}),
        Fix("no_kv_cache", "Serve without the KV cache (re-read the prefix every step)",
            config={"kv_cache": False},
            cost="without the cache every step re-reads the whole prefix: 270 token positions "
                 "per prompt instead of 23 for 20 tokens here, growing with the square of the "
                 "length, and the cache bug is still there"),
        Fix("top_k", "Keep only the 5 most likely tokens", config={"top_k": 5}),
        Fix("lower_temperature", "Lower the temperature to 0.5", config={"temperature": 0.5}),
    ),
    # Measured on seeds 0-19 (bare incidents), grammatical transitions / prompts continued as
    # offline: healthy 0.99-1.00 / 1.00 (every seed); positions 0.21-0.49 / 0.00-0.25, double
    # store 0.28-0.84 / 0.00-0.12, shared cache 0.54-0.70 / 0.25-0.31, padded positions
    # 0.97-0.99 / 0.50-0.88 (the 8 full-length prompts always; of the 8 padded ones
    # 0-6 keep their text, their logits differing from step 1). The padded positions barely
    # touch the grammar (only the second new token reads its prompt at a wrong distance), so
    # the grammar bar sits where healthy text clears it with room (0.9) and the match with the
    # offline decode, exact for every healthy prompt, tells a faithful server. Held-out loss:
    # healthy 1.04-1.11 (seeds 0-19) against the bar of 1.549 below.
    criterion=Criterion(min_learnt=0.55, baselines=(0.9565, 2.2730), min_valid_rate=0.9,
                        min_offline_match=1.0),
    resolves={
        "positions_not_advanced": ("advance_positions", "no_kv_cache"),
        "kv_appended_twice": ("store_once", "no_kv_cache"),
        "cache_not_reset": ("cache_per_request", "no_kv_cache"),
        "padded_positions_from_cache": ("row_positions", "no_kv_cache"),
    },
    generates_text=True,
    code=("kv_positions", "kv_cache_update", "kv_lifetime", "kv_row_positions"),
    recipe=("decode", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram",
            "kv_cache"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Keep the 50 most likely tokens when sampling", {"top_k": 50}),
        Change("Set the generation config's temperature to 0.7", {"temperature": 0.7}),
        Change(SPLIT_CODE), Change(STORE_CODE), Change(LIFETIME_CODE), Change(PADDING_CODE),
    ),
    interview_question="How does a KV cache speed up decoding, which tokens are computed again, "
                       "and how do you test that a cache is correct?",
    debrief=(
        "Interview answer: what the cache stores, what it saves, and the test that proves it.\n"
        "1. WHAT IT IS. In a causal transformer a token's keys and values never change once\n"
        "   computed (it cannot see later tokens). So generation prefills the prompt once\n"
        "   (all its K/V in one pass), then each decoding step computes q, k, v for the ONE\n"
        "   new token, appends its k, v to the cache and attends over everything cached.\n"
        "   Nothing old is recomputed: per step the work is one token against n keys, instead\n"
        "   of re-reading n tokens (quadratic in the length overall). Memory grows with\n"
        "   layers x heads x length x batch: that is what paged caches (vLLM) manage.\n"
        "2. THE BOOKKEEPING that goes wrong: the position of each new token must continue\n"
        "   from the cache length (rotary / learned positions); exactly one k, v per token is\n"
        "   appended; the attention mask (padding) covers the cached keys; and a cache belongs\n"
        "   to one sequence: reset per request, or shared only for an exact token prefix.\n"
        "   In a batch of left-padded prompts a row's positions are its own: read them off its\n"
        "   mask (cumsum - 1) at the prefill AND at every step; the shared cache length is the\n"
        "   padded length, right only for the longest prompt.\n"
        "3. THE TEST. Decode greedily with and without the cache and compare the logits step by\n"
        "   step, prompt by prompt: they must agree to float tolerance. The first divergent step\n"
        "   says where: step 0 (the prefill itself sees something it should not: stale state),\n"
        "   step 1 (the first token fed alone: its position or mask; only the padded prompts:\n"
        "   padding), step 2 (the first time a decode step reads what the previous one stored).\n"
        "   Print the cache length per step as well. Batch prompts of different lengths in the\n"
        "   test: a test with equal lengths never exercises the padding.\n"
        "Turning the cache off makes the text right and the server slow: a workaround that\n"
        "leaves the bug in place."),
)
