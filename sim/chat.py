"""Chatting with an SFT model: the inference prompt (the chat template) and what its answers show.

Training formats a pair as [BOS] prompt [SEP] response [EOS]: SEP marks where the reply starts,
EOS where it ends. At inference the template builds [BOS] prompt and, to ask for a reply, the
reply marker; decoding then runs until the stop token or the token limit. The template has the
implementation the team ships and one that has shipped (chosen by the `chat_template`
implementation field, never shown in a run's config).
"""
from __future__ import annotations

import torch

from . import repetition
from .data import BOS, EOS, FIRST_WORD, PAD, SEP, grammar

N_CHATS = 16
PROMPT_WORDS = 4
PROMPT_SEED_OFFSET = 65537          # held-out prompts, apart from the training pool


# --- the chat template ----------------------------------------------------------------------

def template_with_reply_marker(words: list[int]) -> list[int]:
    return [BOS, *words, SEP]


def template_without_reply_marker(words: list[int]) -> list[int]:
    return [BOS, *words]


TEMPLATES = {"reply_marker": template_with_reply_marker,
             "no_reply_marker": template_without_reply_marker}


def prompt_words(config, count: int = N_CHATS) -> torch.Tensor:
    """(count, PROMPT_WORDS) held-out prompts drawn from the language."""
    gen = torch.Generator().manual_seed(config.seed + PROMPT_SEED_OFFSET)
    return grammar(config.vocab_size).sample(count, PROMPT_WORDS, gen)


def inference_prompts(config, count: int = N_CHATS) -> torch.Tensor:
    template = TEMPLATES[config.chat_template]
    return torch.tensor([template(row) for row in prompt_words(config, count).tolist()])


# --- reading the answers --------------------------------------------------------------------

def reply(generated: list[int], stop_id: int | None) -> list[int]:
    """The reply as a reader gets it: the generated tokens up to the stop (kept), no padding."""
    if stop_id is not None and stop_id in generated:
        return generated[:generated.index(stop_id) + 1]
    return [t for t in generated if t != PAD] if stop_id is not None else generated


def eos_probabilities(model, config, count: int = N_CHATS) -> dict[str, float]:
    """Teacher-forced on held-out pairs in the training format ([BOS] prompt [SEP] reply
    [EOS]): the model's mean P(EOS) where the reply ends, and where it goes on."""
    from .data import response_range
    low, high = response_range(config)
    gen = torch.Generator().manual_seed(config.seed + PROMPT_SEED_OFFSET + 1)
    words = grammar(config.vocab_size).sample(count, PROMPT_WORDS + high, gen).tolist()
    lengths = torch.randint(low, high + 1, (count,), generator=gen).tolist()
    rows = [[BOS, *w[:PROMPT_WORDS], SEP, *w[PROMPT_WORDS:PROMPT_WORDS + n], EOS]
            for w, n in zip(words, lengths)]
    width = max(map(len, rows))
    tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p_eos = model(tokens).float().softmax(-1)[..., EOS]
    model.train(was_training)
    at_end, inside = [], []
    for i, r in enumerate(rows):
        sep = r.index(SEP)
        at_end.append(float(p_eos[i, len(r) - 2]))              # predicts the EOS
        inside += [float(p_eos[i, j]) for j in range(sep, len(r) - 2)]   # predicts a word
    return {"p_eos_reply_end": sum(at_end) / len(at_end),
            "p_eos_mid_reply": sum(inside) / len(inside)}


def chat_and_measure(run, callbacks=(), trace=None) -> tuple[list[list[int]], dict]:
    """Answer the held-out prompts with the run's decoding settings and measure the answers:

        stop_rate      share of answers that ended at the stop token, before the limit
        eos_rate       share of answers in which the model wrote EOS at all
        reply_words    mean number of words per answer (before the stop)
        valid_rate     share of the answers' word transitions the grammar allows (the last two
                       prompt words are the context of the first reply word)
    and the repetition metrics of the replies, and `eos_probabilities`.
    """
    from .decoding import STOP_IDS, generate
    config = run.config
    prompts = inference_prompts(config)
    full = generate(run.model, prompts, config, callbacks, run=run, trace=trace).cpu().tolist()
    width = prompts.shape[1]
    stop_id = STOP_IDS[config.stop_check]
    replies = [reply(seq[width:], stop_id) for seq in full]
    words = prompt_words(config).tolist()
    valid, total = 0, 0
    g = grammar(config.vocab_size)
    for context, answer in zip(words, replies):
        body = [t for t in answer if t != stop_id]
        seq = [*context[-2:], *body]
        for a, b, c in zip(seq, seq[1:], seq[2:]):
            total += 1
            valid += all(t >= FIRST_WORD for t in (a, b, c)) and g.valid(a, b, c)
    metrics = repetition.summarize([r or [PAD] for r in replies])
    metrics.update({
        "stop_rate": sum(bool(r) and r[-1] == stop_id for r in replies) / len(replies),
        "eos_rate": sum(EOS in r for r in replies) / len(replies),
        "reply_words": sum(sum(t >= FIRST_WORD for t in r) for r in replies) / len(replies),
        "valid_rate": valid / total if total else 0.0,
        **eos_probabilities(run.model, config),
    })
    return replies, metrics
