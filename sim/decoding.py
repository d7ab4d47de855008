"""Autoregressive decoding with a KV cache, and the text metrics of a trained run.

`generate` prefills the prompt once, then feeds one token per step and reuses the cached keys
and values; with `kv_cache=False` it re-reads the whole prefix every step instead (slow, but
with no cache to get wrong). Each step turns the last position's logits into a token:

    logits -> repetition penalty -> no-repeat-n-gram ban -> greedy argmax
                                                         or temperature -> top-k -> top-p -> sample

Callbacks see every cached forward pass through `on_decode_step`. How the next token is chosen
and how the KV cache grows are replaceable functions (`sim/implementations.py`).
"""
from __future__ import annotations

import torch

from . import repetition
from .callbacks import CallbackList
from .implementations import chosen, implements
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


def _serve(model, tokens, config, gen, server, hooks, run, trace):
    """One request: the prompt prefilled once, then one token per step (or, without a server,
    the whole prefix re-read every step)."""
    cache = server.start_request() if server else None
    steps, held = [], []
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
            held.append(cache.length)
        steps.append(logits.float())
        next_token = choose(logits.float(), tokens, config, gen)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
    if trace is not None:
        trace.append({"logits": torch.stack(steps, dim=1).cpu(), "cache_keys": held})
    return tokens


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
    prompts = run.stream.prompts(N_PROMPTS, PROMPT_LEN)
    full = generate(run.model, prompts, run.config, callbacks, run=run, trace=trace).cpu().tolist()
    samples = [seq[PROMPT_LEN:] for seq in full]
    metrics = repetition.summarize(samples)
    valid = run.stream.grammar.valid
    metrics["valid_rate"] = sum(repetition.valid_rate(seq, valid, PROMPT_LEN)
                                for seq in full) / len(full)
    return samples, metrics


def shown_prompts(config, count: int) -> list[list[int]]:
    """The prompts a run's samples continue, as the model was fed them."""
    from .data import make_stream
    stream = make_stream(config)
    if config.data != "sft":
        return stream.prompts(count, PROMPT_LEN).tolist()
    from .chat import prompt_words
    template = chosen(config, "chat_template")
    return [template(prompt_words(p)) for p in stream.answer_prompts(count)]
