"""Autoregressive decoding with a KV cache, and the text metrics of a trained run.

`generate` prefills the prompt once, then feeds one token per step and reuses the cached keys
and values; with `kv_cache=False` it re-reads the whole prefix every step instead (slow, but
with no cache to get wrong). Each step turns the last position's logits into a token:

    logits -> repetition penalty -> no-repeat-n-gram ban -> greedy argmax
                                                         or temperature -> top-k -> top-p -> sample

Prompts of different lengths are batched left-padded: the padding is kept out of every
attention, and each row's first real token sits at position 0 as in training (`prompt_batch`).
Callbacks see every cached forward pass through `on_decode_step`. How the next token is chosen
and how the KV cache grows are replaceable functions (`sim/implementations.py`).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from . import repetition
from .callbacks import CallbackList
from .implementations import chosen, implements, usual
from .models import TinyTransformer
from .serving import Server

N_PROMPTS = 16
PROMPT_LEN = 4
# words per prompt, prompt by prompt in turn (`TrainConfig.prompt_lengths`); mixed: every
# request of 4 holds two full-length prompts and two left-padded ones (one pad, two pads)
PROMPT_LENGTHS = {"equal": (PROMPT_LEN,), "mixed": (4, 3, 4, 2)}
SAMPLE_SEED_OFFSET = 8191    # decoding draws its own random numbers, apart from training's


def generate(model, prompts, config, callbacks=(), run=None, trace=None,
             padding=None) -> torch.LongTensor:
    """Continue `prompts` (batch, prompt_len) by `config.gen_tokens` tokens.

    Returns the full sequences, prompt included: (batch, prompt_len + gen_tokens). `padding`
    (batch, prompt_len) is True at the left padding of shorter prompts (None: none); padding is
    kept out of every attention and each row's first real token sits at position 0. Uses the
    decoding fields of `config` (decode, temperature, top_k, top_p, repetition_penalty,
    no_repeat_ngram, kv_cache, requests) and is deterministic for `config.seed`. The prompts are
    served as `config.requests` requests of equal size, one after another, by one server
    (`sim/serving.py`). When `trace` is a list, each request appends {"logits": its
    last-position logits, (rows, gen_tokens, vocab), "cache_keys": the keys its cache held
    after each step ([] without a cache)}. The model is put in eval mode for the call and
    restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(config.seed + SAMPLE_SEED_OFFSET)
    if padding is None:
        padding = torch.zeros_like(prompts, dtype=torch.bool)
    # only the transformer keeps keys/values; other models always re-read the prefix
    server = Server(config) if config.kv_cache and isinstance(model, TinyTransformer) else None
    hooks = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
    outputs = []
    try:
        with torch.no_grad():
            for request, pads in zip(prompts.to(device).tensor_split(config.requests),
                                     padding.to(device).tensor_split(config.requests)):
                outputs.append(_serve(model, request, pads, config, gen, server, hooks, run,
                                      trace))
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def _serve(model, tokens, padding, config, gen, server, hooks, run, trace):
    """One request: the prompt prefilled once, then one token per step (or, without a server,
    the whole prefix re-read every step). `padding` marks the prompt's left padding."""
    cache = server.start_request() if server else None
    origin = cache.length if cache else 0       # keys the cache held before this request
    steps, held = [], []
    for step in range(config.gen_tokens):
        if cache is None:                                       # re-read the whole prefix
            seen = F.pad(padding, (0, tokens.shape[1] - padding.shape[1]))
            if seen.any():      # padding: out of every attention, each row numbered from 0
                logits = model(tokens, key_padding=seen, positions=mask_positions(seen))[:, -1]
            else:
                logits = model(tokens)[:, -1]
        else:
            # step 0 prefills the prompt; later steps feed only the newest token
            new = tokens if step == 0 else tokens[:, -1:]
            keys = _key_padding(padding, origin, cache.length + new.shape[1])
            positions = hooks.decode_step(run, step, cache)
            if positions is None:
                positions = server.positions(cache, new.shape[1]).to(tokens.device)
            positions = server.row_positions(positions, keys)
            logits = model(new, key_padding=keys, cache=cache, positions=positions)[:, -1]
            held.append(cache.length)
        steps.append(logits.float())
        next_token = choose(logits.float(), tokens, config, gen)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
    if trace is not None:
        trace.append({"logits": torch.stack(steps, dim=1).cpu(), "cache_keys": held})
    return tokens


def mask_positions(padding) -> torch.Tensor:
    """(batch, time) positions of left-padded rows, read off the padding mask: each row's real
    tokens numbered from 0 (the padding gets 0 too; no real token sees it)."""
    return ((~padding).long().cumsum(dim=1) - 1).clamp(min=0)


def _key_padding(padding, origin: int, keys: int) -> torch.Tensor:
    """(batch, keys) True at the request's padding among the `keys` a cached pass attends to:
    the prompt's own, stored right after the `origin` keys the cache held before the request."""
    out = torch.zeros(padding.shape[0], keys, dtype=torch.bool, device=padding.device)
    out[:, origin:origin + padding.shape[1]] = padding
    return out


def choose(logits, tokens, config, gen) -> torch.Tensor:
    """One next token per row from the last-position `logits` (batch, vocab)."""
    return chosen(config, "token_choice")(processed_logits(logits, tokens, config), config, gen)


def processed_logits(logits, tokens, config):
    """The next-token scores after the generation config's repetition controls: the
    repetition penalty, then the no-repeat-n-gram ban. Returns a new tensor."""
    logits = logits.clone()
    if config.repetition_penalty != 1.0:
        apply_repetition_penalty(logits, tokens, config.repetition_penalty)
    if config.no_repeat_ngram > 0:
        ban_repeated_ngrams(logits, tokens, config.no_repeat_ngram)
    return logits


@implements("token_choice", "by_decode_setting")
def next_tokens(logits, config, gen):
    """The next token of each row: the argmax when decoding greedily, else a draw after
    temperature, top-k and top-p."""
    if config.decode == "greedy":
        return logits.argmax(dim=-1)
    return draw(logits, config, gen)


@implements("token_choice", "by_decode_name")
def pick_next_tokens(logits, config, gen):
    """The next token of each row: the argmax when decoding greedily, else a draw after
    temperature, top-k and top-p."""
    if config.decode != "sampling":
        return logits.argmax(dim=-1)
    return draw(logits, config, gen)


def draw(logits, config, gen) -> torch.Tensor:
    """Sample one token per row after temperature, top-k and top-p."""
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


def answer_and_measure(run, callbacks=(), trace=None) -> tuple[list[list[int]], dict]:
    """SFT: answer held-out prompts with the run's decoding settings, each prompt rendered by
    the server's chat template (usually [BOS] prompt [SEP]) and each answer cut where the
    server's stopping criterion ends it (usually after its first EOS), and measure them:
    `stop_rate` (share of answers that end with EOS within `gen_tokens`), `answer_words` (mean
    words before the stop), `valid_rate` (share of answer transitions the grammar allows, the
    prompt's last two words as context; a special token in an answer counts as a wrong word),
    `eos_rate` (share of answers that contain EOS) and the model's P(EOS) on held-out pairs
    (`chat.eos_probabilities`)."""
    from .chat import eos_probabilities, prompt_words
    from .data import EOS, FIRST_WORD
    valid = run.stream.grammar.valid
    template, answer_end = chosen(run.config, "chat_template"), chosen(run.config, "stop_check")
    answers, stops, words, good, total = [], 0, 0, 0, 0
    for prompt in run.stream.answer_prompts(N_PROMPTS):
        fed = template(prompt_words(prompt))
        out = generate(run.model, torch.tensor([fed]), run.config, callbacks, run=run,
                       trace=trace)
        answer = out[0, len(fed):].tolist()
        end = answer_end(answer)
        if end is not None:
            answer = answer[:end + 1]
            stops += answer[-1] == EOS
        answers.append(answer)
        context = prompt[-3:-1]
        for token in answer:
            if token == EOS:
                break
            good += token >= FIRST_WORD and valid(*context, token)
            total += 1
            context = [context[1], token]
        words += sum(t >= FIRST_WORD for t in answer)
    return answers, {"stop_rate": stops / len(answers), "answer_words": words / len(answers),
                     "valid_rate": good / total if total else 1.0,
                     "eos_rate": sum(EOS in a for a in answers) / len(answers),
                     **eos_probabilities(run.model, run.stream)}


def sample_and_measure(run, callbacks=(), trace=None) -> tuple[list[list[int]], dict]:
    """Generate continuations of the run's prompts with its decoding settings and measure them.

    Returns the continuations (prompt stripped) and the repetition metrics of
    `repetition.summarize` plus `valid_rate`, the share of generated transitions the toy
    grammar allows (judged with the prompt as context for the first two tokens).
    """
    if run.config.data == "sft":
        return answer_and_measure(run, callbacks, trace)
    texts = shown_prompts(run.config, N_PROMPTS, run.stream)
    prompts, padding = prompt_batch(texts)
    full = generate(run.model, prompts, run.config, callbacks, run=run, trace=trace,
                    padding=padding).cpu().tolist()
    samples = [seq[prompts.shape[1]:] for seq in full]
    metrics = repetition.summarize(samples)
    valid = run.stream.grammar.valid
    metrics["valid_rate"] = sum(repetition.valid_rate(prompt + sample, valid, len(prompt))
                                for prompt, sample in zip(texts, samples)) / len(full)
    return samples, metrics


# code that only a cached decode runs: an offline decode (no cache) is the same without it
SERVER_CODE = ("kv_cache_update", "kv_positions", "kv_lifetime", "kv_row_positions")


def offline_config(config):
    """`config` decoded offline: the same settings, every step re-reading the prefix."""
    return dataclasses.replace(config, kv_cache=False,
                               **{slot: usual(slot) for slot in SERVER_CODE})


def same_text_share(samples: list[list[int]], reference: list[list[int]]) -> float:
    """The share of prompts whose continuation in `samples` equals the one in `reference`."""
    return sum(a == b for a, b in zip(samples, reference)) / len(samples)


def prompt_batch(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts as one batch, the shorter ones padded with PAD on the left (so that every
    row's next token comes last), and (batch, longest) True at the padding."""
    from .data import PAD
    longest = max(len(p) for p in prompts)
    tokens = torch.tensor([[PAD] * (longest - len(p)) + p for p in prompts])
    padding = torch.tensor([[True] * (longest - len(p)) + [False] * len(p) for p in prompts])
    return tokens, padding


def shown_prompts(config, count: int, stream=None) -> list[list[int]]:
    """The prompts a run's samples continue, as the model was fed them (padding left out)."""
    from .data import make_stream
    stream = stream or make_stream(config)
    if config.data != "sft":
        lengths = PROMPT_LENGTHS[config.prompt_lengths]
        rows = stream.prompts(count, max(lengths)).tolist()
        return [row[:lengths[i % len(lengths)]] for i, row in enumerate(rows)]
    from .chat import prompt_words
    template = chosen(config, "chat_template")
    return [template(prompt_words(p)) for p in stream.answer_prompts(count)]
