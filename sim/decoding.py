"""Autoregressive decoding with a KV cache, and the text metrics of a trained run.

`generate` prefills the prompt once, then feeds one token per step and reuses the cached keys
and values; with `kv_cache=False` it re-reads the whole prefix every step instead (slow, but
with no cache to get wrong). Each step turns the last position's logits into a token:

    logits -> repetition penalty -> no-repeat-n-gram ban -> greedy argmax
                                                         or temperature -> top-k -> top-p -> sample

Callbacks see every cached forward pass through `on_decode_step` (that is where the KV-cache
faults in `team_code.py` live).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import repetition
from .callbacks import CallbackList
from .data import EOS, PAD, SEP
from .models import TinyTransformer
from .serving import Server

N_PROMPTS = 16
PROMPT_LEN = 4
SAMPLE_SEED_OFFSET = 8191    # decoding draws its own random numbers, apart from training's


def generate(model, prompts, config, callbacks=(), run=None, trace=None) -> torch.LongTensor:
    """Continue `prompts` (batch, prompt_len) by `config.gen_tokens` tokens.

    Returns the full sequences, prompt included: (batch, prompt_len + gen_tokens). Uses the
    decoding fields of `config` (decode, temperature, top_k, top_p, repetition_penalty,
    no_repeat_ngram, kv_cache, requests) and is deterministic for `config.seed`. The prompts are
    served as `config.requests` requests of equal size, one after another, by one server. When
    `trace` is a list, each request appends {"logits": its last-position logits, (rows,
    gen_tokens, vocab), "cache_keys": the keys the cache holds after each step ([] uncached)}.
    The model is put in eval mode for the call and restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(config.seed + SAMPLE_SEED_OFFSET)
    # only the transformer keeps keys/values; other models always re-read the prefix
    server = Server(config) if config.kv_cache and isinstance(model, TinyTransformer) else None
    hooks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
    outputs = []
    try:
        with torch.no_grad():
            for request in prompts.to(device).tensor_split(config.requests):
                outputs.append(_serve(model, request, config, gen, server, hooks, run, trace))
    finally:
        model.train(was_training)
    return torch.cat(outputs)


# The token an SFT model's decoding stops at (the `stop_check` implementation field).
STOP_IDS = {"eos": EOS, "sep": SEP}


def _serve(model, tokens, config, gen, server, hooks, run, trace):
    """One request: the prompt prefilled once, then one token per step (or, without a server,
    the whole prefix re-read every step). A chat model's rows stop at the stop token: the
    rest of a finished row is padding, and decoding ends when every row has finished."""
    cache = server.start_request() if server else None
    steps, held = [], []
    stop_id = STOP_IDS[config.stop_check] if config.data == "sft" else None
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    width = tokens.shape[1] + config.gen_tokens
    for step in range(config.gen_tokens):
        if cache is None:
            logits = model(tokens)[:, -1]                       # re-read the whole prefix
        else:
            # step 0 prefills the prompt; later steps feed only the newest token
            new = tokens if step == 0 else tokens[:, -1:]
            positions = hooks.decode_step(run, step, cache)
            if positions is None:
                positions = server.positions(cache, new.shape[1]).to(tokens.device)
            logits = model(new, cache=cache, positions=positions)[:, -1]
            if step > 0:
                server.after_decode_step(cache)
            held.append(cache.length)
        steps.append(logits.float())
        next_token = choose(logits.float(), tokens, config, gen)
        if stop_id is not None:
            next_token = next_token.masked_fill(done, PAD)
            done |= next_token == stop_id
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        if stop_id is not None and bool(done.all()):
            tokens = F.pad(tokens, (0, width - tokens.shape[1]), value=PAD)
            break
    if trace is not None:
        trace.append({"logits": torch.stack(steps, dim=1).cpu(), "cache_keys": held})
    return tokens


def choose(logits, tokens, config, gen) -> torch.Tensor:
    """One next token per row from the last-position `logits` (batch, vocab)."""
    logits = logits.clone()
    if config.repetition_penalty != 1.0 and config.apply_repetition_penalty:
        apply_repetition_penalty(logits, tokens, config.repetition_penalty)
    if config.no_repeat_ngram > 0:
        ban_repeated_ngrams(logits, tokens, config.no_repeat_ngram)
    if config.decode == "greedy":
        return logits.argmax(dim=-1)                   # temperature/top-k/top-p do not apply
    logits = logits / config.temperature
    if config.top_k > 0:
        kth = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if config.top_p < 1.0:
        probs = nucleus(probs, config.top_p)
    # draw on the CPU: the generator lives there, and a run samples alike on every device
    return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(1).to(logits.device)


def apply_repetition_penalty(logits, tokens, penalty: float) -> None:
    """CTRL-style, in place: for every token already in the row, divide a positive logit by
    `penalty` and multiply a negative one, so it always becomes less likely. It depends only on
    *whether* a token occurred, not how often."""
    seen = logits.gather(1, tokens)
    logits.scatter_(1, tokens, torch.where(seen > 0, seen / penalty, seen * penalty))


def ban_repeated_ngrams(logits, tokens, n: int) -> None:
    """In place: forbid any token that would complete an n-gram already present in the row."""
    if tokens.shape[1] < n:
        return
    for row, seq in enumerate(tokens.tolist()):
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned = {seq[i + n - 1] for i in range(len(seq) - n + 1)
                  if tuple(seq[i:i + n - 1]) == prefix}
        if banned and len(banned) < logits.shape[1]:      # never ban every token
            logits[row, list(banned)] = float("-inf")


def nucleus(probs, top_p: float):
    """Keep the smallest set of most likely tokens whose probability reaches `top_p`."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs      # mass of the tokens ranked above
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)   # the top token always stays
    return torch.zeros_like(probs).scatter(1, order, sorted_probs)


def sample_and_measure(run, callbacks=(), trace=None) -> tuple[list[list[int]], dict]:
    """Generate continuations of the run's prompts with its decoding settings and measure them.

    Returns the continuations (prompt stripped) and the repetition metrics of
    `repetition.summarize` plus `valid_rate`, the share of generated transitions the toy
    grammar allows (judged with the prompt as context for the first two tokens). `trace`: see
    `generate`.
    """
    if run.config.data == "sft":
        from .chat import chat_and_measure
        return chat_and_measure(run, callbacks, trace)
    prompts = run.stream.prompts(N_PROMPTS, PROMPT_LEN)
    full = generate(run.model, prompts, run.config, callbacks, run=run, trace=trace).cpu().tolist()
    samples = [seq[PROMPT_LEN:] for seq in full]
    metrics = repetition.summarize(samples)
    valid = run.stream.grammar.valid
    metrics["valid_rate"] = sum(repetition.valid_rate(seq, valid, PROMPT_LEN)
                                for seq in full) / len(full)
    return samples, metrics


def shown_prompts(config, count: int) -> torch.Tensor:
    """The prompts a run's samples continue, as fed to the model."""
    if config.data == "sft":
        from .chat import inference_prompts
        return inference_prompts(config, count)
    from .data import make_stream
    return make_stream(config).prompts(count, PROMPT_LEN)
