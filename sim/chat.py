"""Chatting with an SFT model: the inference prompt (the chat template), where an answer ends,
and where the model thinks it ends (P(EOS)).

Training formats a pair as [BOS] prompt [SEP] response [EOS]: SEP marks where the reply starts,
EOS where it ends. At inference the server renders the prompt with its chat template and cuts
each answer with its stopping criterion; both are replaceable functions
(`sim/implementations.py`: the `chat_template` and `stop_check` slots).
"""
from __future__ import annotations

import torch

from .data import BOS, EOS, PAD, SEP
from .implementations import implements


def prompt_words(prompt: list[int]) -> list[int]:
    """The words of a held-out prompt given as [BOS] words [SEP]."""
    return [t for t in prompt if t not in (BOS, SEP)]


@implements("chat_template", "reply_marker")
def render_prompt(words: list[int]) -> list[int]:
    """The token ids the server feeds for a user prompt, up to where the reply begins."""
    return [BOS, *words, SEP]


@implements("chat_template", "no_reply_marker")
def format_prompt(words: list[int]) -> list[int]:
    """The token ids the server feeds for a user prompt, up to where the reply begins."""
    return [BOS, *words]


@implements("stop_check", "eos")
def end_of_answer(answer: list[int]) -> int | None:
    """Where a generated answer ends: the index of its end-of-turn token (None: it never
    ended within the token limit)."""
    return answer.index(EOS) if EOS in answer else None


@implements("stop_check", "sep")
def answer_stop(answer: list[int]) -> int | None:
    """Where a generated answer ends: the index of its end-of-turn token (None: it never
    ended within the token limit)."""
    return answer.index(SEP) if SEP in answer else None


def eos_probabilities(model, stream) -> dict[str, float]:
    """Teacher-forced on the held-out pairs in the training format ([BOS] prompt [SEP] reply
    [EOS], the usual pipeline): the model's mean P(EOS) where a reply ends, and inside it."""
    rows = [row for row in stream.eval_pool if EOS in row and SEP in row][:32]
    if not rows:
        return {"p_eos_reply_end": float("nan"), "p_eos_mid_reply": float("nan")}
    width = max(map(len, rows))
    tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p_eos = model(tokens).float().softmax(-1)[..., EOS]
    model.train(was_training)
    at_end, inside = [], []
    for i, row in enumerate(rows):
        end = row.index(EOS)
        at_end.append(float(p_eos[i, end - 1]))                         # predicts the EOS
        inside += [float(p_eos[i, j]) for j in range(row.index(SEP), end - 1)]   # a word
    return {"p_eos_reply_end": sum(at_end) / len(at_end),
            "p_eos_mid_reply": sum(inside) / len(inside) if inside else float("nan")}
