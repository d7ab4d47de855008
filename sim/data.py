"""Deterministic synthetic data, generated in code: a toy language and prompt/response pairs.

The toy language is a sparse second-order Markov chain over "word" tokens: each pair of words
allows three next words with probabilities 0.6 / 0.3 / 0.1. A model can learn it in seconds,
its entropy is known (the loss floor), and generated text can be checked against the grammar.
The language itself is fixed for the product; a run's seed only decides which sentences are
drawn. Sample i of a run is the same whatever the batch size, so micro-batching a large batch
sees exactly the same data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

PAD, BOS, EOS, SEP = 0, 1, 2, 3
FIRST_WORD = 4
IGNORE = -100                    # target value that the loss skips
BRANCH_PROBS = (0.6, 0.3, 0.1)
LANGUAGE_SEED = 1729
CHUNK = 256                      # sequences generated per seeded chunk


@dataclass
class Batch:
    tokens: torch.Tensor                   # (batch, time) input ids
    targets: torch.Tensor                  # (batch, time) next-token ids, IGNORE where unsupervised
    key_padding: torch.Tensor | None = None  # (batch, time) True where the input is padding

    @property
    def size(self) -> int:
        return self.tokens.shape[0]


class Grammar:
    """The toy language: next-word probabilities given the previous two words."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.n_words = vocab_size - FIRST_WORD
        gen = torch.Generator().manual_seed(LANGUAGE_SEED + vocab_size)
        n = self.n_words
        # successors[a, b] = the three words allowed after (a, b), most likely first
        scores = torch.rand(n, n, n, generator=gen)
        self.successors = scores.topk(3, dim=-1).indices + FIRST_WORD
        probs = torch.zeros(vocab_size, vocab_size, vocab_size)
        for rank, p in enumerate(BRANCH_PROBS):
            a = torch.arange(n)[:, None].expand(n, n) + FIRST_WORD
            b = torch.arange(n)[None, :].expand(n, n) + FIRST_WORD
            probs[a, b, self.successors[..., rank]] = p
        self.probs = probs               # probs[a, b, c] = P(c | a, b)

    @property
    def entropy(self) -> float:
        """Per-token entropy in nats: the lowest loss any model can reach on this language."""
        return -sum(p * math.log(p) for p in BRANCH_PROBS)

    def sample(self, count: int, length: int, gen: torch.Generator) -> torch.Tensor:
        """`count` word sequences of `length` tokens."""
        out = torch.empty(count, length, dtype=torch.long)
        out[:, :2] = torch.randint(FIRST_WORD, self.vocab_size, (count, 2), generator=gen)
        for t in range(2, length):
            rows = self.probs[out[:, t - 2], out[:, t - 1]]
            out[:, t] = torch.multinomial(rows, 1, generator=gen).squeeze(1)
        return out

    def valid(self, a: int, b: int, c: int) -> bool:
        return bool(self.probs[a, b, c] > 0)


@lru_cache(maxsize=8)
def grammar(vocab_size: int) -> Grammar:
    return Grammar(vocab_size)


def _chunk(stream_seed: int, index: int, make) -> torch.Tensor:
    gen = torch.Generator().manual_seed(stream_seed * 1_000_003 + index)
    return make(gen)


class MarkovStream:
    """Plain language modelling on the toy language: every position is supervised."""

    def __init__(self, config) -> None:
        self.config = config
        self.grammar = grammar(config.vocab_size)
        self._chunks: dict[int, torch.Tensor] = {}

    def _sequences(self, start: int, count: int, stream_seed: int) -> torch.Tensor:
        rows = []
        for i in range(start, start + count):
            key = (stream_seed, i // CHUNK)
            if key not in self._chunks:
                self._chunks[key] = _chunk(stream_seed, i // CHUNK, lambda g: self.grammar.sample(
                    CHUNK, self.config.seq_len + 1, g))
            rows.append(self._chunks[key][i % CHUNK])
        return torch.stack(rows)

    def _batch(self, sequences: torch.Tensor) -> Batch:
        return Batch(sequences[:, :-1].contiguous(), sequences[:, 1:].contiguous())

    def batch(self, step: int, micro: int) -> Batch:
        cfg = self.config
        start = (step * cfg.grad_accum_steps + micro) * cfg.batch_size
        return self._batch(self._sequences(start, cfg.batch_size, cfg.seed))

    def eval_batch(self) -> Batch:
        return self._batch(self._sequences(0, self.config.eval_batch_size, self.config.seed + 7919))

    def prompts(self, count: int, length: int = 4) -> torch.Tensor:
        return self._sequences(0, count, self.config.seed + 104729)[:, :length]


class SftStream:
    """Prompt/response pairs: [BOS] prompt [SEP] response [EOS], padded; only the response is
    supervised. Prompts vary in length and long ones push the response past `seq_len`
    (truncation), as in real SFT data."""

    POOL = 1024

    def __init__(self, config) -> None:
        self.config = config
        self.grammar = grammar(config.vocab_size)
        self.pool, self.pool_lengths = self._make_pool(config.seed)
        self.eval_pool, _ = self._make_pool(config.seed + 7919, self.config.eval_batch_size)

    def _make_pool(self, seed: int, size: int | None = None):
        cfg = self.config
        size = size or self.POOL
        gen = torch.Generator().manual_seed(seed)
        words = self.grammar.sample(size, cfg.seq_len + 8, gen)
        prompt_lengths = torch.randint(2, cfg.seq_len + 1, (size,), generator=gen)
        response_lengths = torch.randint(3, 9, (size,), generator=gen)
        rows, lengths = [], []
        for i in range(size):
            p, r = int(prompt_lengths[i]), int(response_lengths[i])
            seq = [BOS, *words[i, :p].tolist(), SEP, *words[i, p:p + r].tolist(), EOS]
            rows.append(seq[:cfg.seq_len + 1])          # truncation cuts responses of long prompts
            lengths.append(p)
        return rows, lengths

    def _collate(self, rows: list[list[int]]) -> Batch:
        cfg = self.config
        width = cfg.seq_len + 1
        tokens = torch.full((len(rows), width), PAD, dtype=torch.long)
        supervised = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, seq in enumerate(rows):
            offset = width - len(seq) if cfg.padding_side == "left" else 0
            tokens[i, offset:offset + len(seq)] = torch.tensor(seq)
            if SEP in seq:
                sep = seq.index(SEP)
                supervised[i, offset + sep + 1:offset + len(seq)] = True
        targets = tokens[:, 1:].masked_fill(~supervised[:, 1:], IGNORE)
        inputs = tokens[:, :-1]
        return Batch(inputs.contiguous(), targets.contiguous(), inputs == PAD)

    def _order(self, epoch: int) -> list[int]:
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed * 31 + epoch)
        if not cfg.length_grouped:
            return torch.randperm(self.POOL, generator=gen).tolist()
        by_length = sorted(range(self.POOL), key=lambda i: (self.pool_lengths[i], i))
        groups = [by_length[i:i + cfg.batch_size] for i in range(0, self.POOL, cfg.batch_size)]
        return [i for g in torch.randperm(len(groups), generator=gen).tolist() for i in groups[g]]

    def batch(self, step: int, micro: int) -> Batch:
        cfg = self.config
        start = (step * cfg.grad_accum_steps + micro) * cfg.batch_size
        rows = []
        for i in range(start, start + cfg.batch_size):
            epoch, index = divmod(i, self.POOL)
            rows.append(self.pool[self._cached_order(epoch)[index]])
        return self._collate(rows)

    def _cached_order(self, epoch: int) -> list[int]:
        if getattr(self, "_epoch", None) != epoch:
            self._epoch, self._order_list = epoch, self._order(epoch)
        return self._order_list

    def eval_batch(self) -> Batch:
        return self._collate(self.eval_pool)

    def prompts(self, count: int, length: int = 4) -> torch.Tensor:
        return torch.tensor([row[1:1 + length] for row in self.pool[:count]])


def make_stream(config):
    return SftStream(config) if config.data == "sft" else MarkovStream(config)
