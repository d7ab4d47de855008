"""Deterministic synthetic data, generated in code: a toy language and prompt/response pairs.

The toy language is a sparse second-order Markov chain over "word" tokens: each pair of words
allows three next words with probabilities 0.6 / 0.3 / 0.1. A model can learn it in seconds,
its entropy is known (the loss floor), and generated text can be checked against the grammar.
The language itself is fixed for the product; a run's seed only decides which sentences are
drawn. Sample i of a run is the same whatever the batch size, so micro-batching a large batch
sees exactly the same data.

Two reference points tell how much a run has learnt (see `baselines`): the entropy floor (the
loss of the true generator itself; no model can do better on average) and the unigram baseline
(the loss of predicting the marginal token frequencies, which a model reaches without learning
any of the grammar).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from .implementations import chosen, implements

PAD, BOS, EOS, SEP = 0, 1, 2, 3
FIRST_WORD = 4
IGNORE = -100                    # target value that the loss skips
BRANCH_PROBS = (0.6, 0.3, 0.1)
LANGUAGE_SEED = 1729
CHUNK = 256                      # sequences generated per seeded chunk
# sft: how long prompts and responses are (`TrainConfig.sft_lengths`; see `prompt_lengths`)
RESPONSE_LENGTHS = {"short_answers": (3, 8),     # responses have 3 .. 8 words (uniform), then EOS
                    "long_answers": (12, 20),    # 12 .. 20 words, often cut by truncation
                    "four_word_answers": (4, 4)}  # exactly 4 words (prompts as short_answers)
MIN_PROMPT = 2                   # short_answers: prompts have MIN_PROMPT .. seq_len words
SHORT_PROMPTS = (2, 4)           # long_answers: most prompts have 2 .. 4 words (uniform) ...
LONG_PROMPT_SHARE = 0.125        # ... and one in eight fills the context


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
        """Entropy in nats of a word given the two before it (the same for every pair). A
        sequence's first two words are uniform, so the loss floor over a whole sequence is a
        little higher: see `baselines`."""
        return -sum(p * math.log(p) for p in BRANCH_PROBS)

    def word_marginals(self, length: int) -> torch.Tensor:
        """(length, n_words) float64: the distribution of the word at each position of a sampled
        sequence (the first two are uniform; after that it follows the chain)."""
        n = self.n_words
        step = self.probs[FIRST_WORD:, FIRST_WORD:, FIRST_WORD:].double()    # T[a, b, c]
        pairs = torch.full((n, n), 1.0 / n ** 2, dtype=torch.float64)         # P(x_t, x_t+1)
        out = [torch.full((n,), 1.0 / n, dtype=torch.float64)]
        for _ in range(length - 1):
            out.append(pairs.sum(0))
            pairs = (pairs[:, :, None] * step).sum(0)
        return torch.stack(out[:length])

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

    def _sequences(self, start: int, count: int, stream_seed: int, repeat: int = 0) -> torch.Tensor:
        """`count` sequences of the stream from `start` on; with `repeat`, the stream is a data
        set of that many sequences, read again in a new order (seeded) each time it is used up:
        epoch 0 in the set's own order, every later epoch shuffled."""
        rows = []
        for i in (self._in_epoch_order(j, repeat, stream_seed) if repeat else j
                  for j in range(start, start + count)):
            key = (stream_seed, i // CHUNK)
            if key not in self._chunks:
                self._chunks[key] = _chunk(stream_seed, i // CHUNK, lambda g: self.grammar.sample(
                    CHUNK, self.config.seq_len + 1, g))
            rows.append(self._chunks[key][i % CHUNK])
        return torch.stack(rows)

    def _in_epoch_order(self, j: int, size: int, stream_seed: int) -> int:
        epoch, k = divmod(j, size)
        if epoch == 0:
            return k
        key = ("order", stream_seed, size, epoch)
        if key not in self._chunks:
            gen = torch.Generator().manual_seed(stream_seed * 7_919 + epoch)
            self._chunks[key] = torch.randperm(size, generator=gen).tolist()
        return self._chunks[key][k]

    def _batch(self, sequences: torch.Tensor) -> Batch:
        every = torch.ones_like(sequences, dtype=torch.bool)     # every token carries a label
        inputs, targets = chosen(self.config, "label_shift")(sequences, every)
        return Batch(inputs.contiguous(), targets.contiguous())

    def batch(self, step: int, micro: int) -> Batch:
        cfg = self.config
        size = chosen(cfg, "batch_split")(cfg)
        start = (step * cfg.grad_accum_steps + micro) * size
        return self._batch(self._sequences(start, size, cfg.seed, cfg.train_sequences))

    def eval_batch(self) -> Batch:
        return self._batch(chosen(self.config, "heldout_split")(self, self.config.eval_batch_size))

    def prompts(self, count: int, length: int = 4) -> torch.Tensor:
        return self._sequences(0, count, self.config.seed + 104729)[:, :length]


@implements("heldout_split", "own_stream")
def held_out_sequences(stream, count: int) -> torch.Tensor:
    """The `count` sequences the held-out loss is measured on, kept apart from the training
    set."""
    return stream._sequences(0, count, stream.config.seed + 7919)


@implements("heldout_split", "dataset_tail")
def validation_split(stream, count: int) -> torch.Tensor:
    """The `count` sequences the held-out loss is measured on, kept apart from the training
    set."""
    size = stream.config.train_sequences
    return stream._sequences(size - count, count, stream.config.seed, size)


# The launch template this job starts from: one training process, on a node that has 8 GPUs;
# the template's jobs accumulate gradients over 4 micro-batches and, as the smoke test it was
# written for, stop after 20 steps.
LAUNCH = {"processes": 1, "gpus_per_node": 8, "grad_accum_steps": 4, "max_steps": 20}


@implements("batch_split", "by_processes")
def per_device_batch_size(config) -> int:
    """Sequences this process loads per micro-batch: the global batch split evenly over the
    data-parallel workers of the launch."""
    return max(config.batch_size // LAUNCH["processes"], 1)


@implements("batch_split", "by_node_gpus")
def local_batch_size(config) -> int:
    """Sequences this process loads per micro-batch: the global batch split evenly over the
    data-parallel workers of the launch."""
    return max(config.batch_size // LAUNCH["gpus_per_node"], 1)


@implements("batch_split", "by_optimizer_step")
def loader_batch_size(config) -> int:
    """Sequences this process loads per micro-batch: the global batch split evenly over the
    data-parallel workers of the launch."""
    return max(config.batch_size * config.grad_accum_steps // LAUNCH["processes"], 1)


@implements("sft_template", "with_eos")
def format_example(prompt: list[int], response: list[int]) -> list[int]:
    """One prompt/response pair as the token ids the model trains on: BOS, the prompt, SEP,
    the response, EOS."""
    return [BOS, *prompt, SEP, *response, EOS]


@implements("sft_template", "without_eos")
def build_example(prompt: list[int], response: list[int]) -> list[int]:
    """One prompt/response pair as the token ids the model trains on: BOS, the prompt, SEP,
    the response, EOS."""
    return [BOS, *prompt, SEP, *response]


@implements("sft_labels", "response_and_eos")
def response_labels(example: list[int]) -> list[bool]:
    """Which tokens of an example the loss is computed on: everything after SEP (the
    response and its EOS); never the prompt."""
    start = example.index(SEP) + 1 if SEP in example else len(example)
    return [i >= start for i in range(len(example))]


@implements("sft_labels", "response_words")
def answer_labels(example: list[int]) -> list[bool]:
    """Which tokens of an example the loss is computed on: everything after SEP (the
    response and its EOS); never the prompt."""
    start = example.index(SEP) + 1 if SEP in example else len(example)
    return [i >= start and token >= FIRST_WORD for i, token in enumerate(example)]


@implements("sft_labels", "whole_example")
def example_labels(example: list[int]) -> list[bool]:
    """Which tokens of an example the loss is computed on: everything after SEP (the
    response and its EOS); never the prompt."""
    start = 1 if SEP in example else len(example)
    return [i >= start for i in range(len(example))]


@implements("label_shift", "one_ahead")
def next_token_targets(tokens, supervised):
    """Inputs and targets of a padded batch: position t is trained to predict token t + 1,
    where that token carries a label (IGNORE elsewhere)."""
    inputs = tokens[:, :-1]
    targets = tokens[:, 1:].masked_fill(~supervised[:, 1:], IGNORE)
    return inputs, targets


@implements("label_shift", "same_position")
def aligned_targets(tokens, supervised):
    """Inputs and targets of a padded batch: position t is trained to predict token t + 1,
    where that token carries a label (IGNORE elsewhere)."""
    inputs = tokens[:, :-1]
    targets = inputs.masked_fill(~supervised[:, 1:], IGNORE)
    return inputs, targets


def pad_token_id(config) -> int:
    """The id the collator pads with: a PAD token of its own, or EOS (a tokenizer without a
    pad token, given `pad_token = eos_token`)."""
    return EOS if config.pad_token == "eos" else PAD


@implements("padding_labels", "by_position")
def unpadded_labels(tokens, supervised, padding, pad_id):
    """The collated batch's labels with every padding position left out of the loss."""
    return supervised & ~padding


@implements("padding_labels", "by_pad_id")
def labels_without_padding(tokens, supervised, padding, pad_id):
    """The collated batch's labels with every padding position left out of the loss."""
    return supervised & (tokens != pad_id)


def measurement_config(config):
    """`config` with the usual data pipeline: how held-out data is built and scored is part of
    the measurement, whatever the team's training code does."""
    import dataclasses
    from .config import IMPLEMENTATIONS
    usual = {slot: names[0] for slot, names in IMPLEMENTATIONS.items()
             if slot in ("sft_template", "sft_labels", "label_shift", "padding_labels")}
    return dataclasses.replace(config, **usual)


def prompt_lengths(seq_len: int, mix: str = "short_answers") -> dict[int, float]:
    """sft: the probability of each prompt length (in words).

    short_answers  prompts of 2 .. seq_len words (uniform) with 3-8-word answers: long prompts
                   push the answer past `seq_len`, and only about a fifth of a row is supervised.
    long_answers   most prompts are short questions (2-4 words) with long answers, so about half
                   of a row is supervised; one in eight is a long document that fills the
                   context (seq_len - 1 .. seq_len + 2 words), and truncation to `seq_len` cuts
                   off its whole response (and the SEP with it), as it does to over-long
                   examples in real SFT data.
    """
    if mix in ("short_answers", "four_word_answers"):
        prompts = range(MIN_PROMPT, seq_len + 1)
        return {p: 1 / len(prompts) for p in prompts}
    low, high = SHORT_PROMPTS
    short = range(low, high + 1)
    long = range(seq_len - 1, seq_len + 3)
    probs = {p: (1 - LONG_PROMPT_SHARE) / len(short) for p in short}
    for p in long:
        probs[p] = probs.get(p, 0.0) + LONG_PROMPT_SHARE / len(long)
    return probs


def _draw_lengths(probs: dict[int, float], size: int, gen) -> torch.Tensor:
    """`size` lengths drawn from `probs`; a uniform range is drawn with randint (as the
    short_answers pools always were, so they do not change)."""
    lengths = list(probs)
    if len(set(probs.values())) == 1 and lengths == list(range(lengths[0], lengths[-1] + 1)):
        return torch.randint(lengths[0], lengths[-1] + 1, (size,), generator=gen)
    weights = torch.tensor(list(probs.values()), dtype=torch.float64)
    return torch.tensor(lengths)[torch.multinomial(weights, size, replacement=True,
                                                   generator=gen)]


class SftStream:
    """Prompt/response pairs: [BOS] prompt [SEP] response [EOS], padded; only the response is
    supervised. Long responses run past `seq_len` and are cut, and the longest prompts leave no
    room for any of their response (truncation), as in real SFT data."""

    POOL = 1024

    def __init__(self, config) -> None:
        self.config = config
        self.grammar = grammar(config.vocab_size)
        self.pool, self.pool_lengths = self._make_pool(config.seed)
        # the held-out set is the measurement, not the team's code: always the usual pipeline
        self.measured = measurement_config(config)
        self.eval_pool, _ = self._make_pool(config.seed + 7919, self.config.eval_batch_size,
                                            self.measured)
        self._collated = self._collate(self.pool)       # padded once; batches are rows of it

    def _make_pool(self, seed: int, size: int | None = None, config=None):
        cfg = config or self.config
        size = size or self.POOL
        gen = torch.Generator().manual_seed(seed)
        probs = prompt_lengths(cfg.seq_len, cfg.sft_lengths)
        low, high = RESPONSE_LENGTHS[cfg.sft_lengths]
        words = self.grammar.sample(size, max(probs) + high, gen)
        prompts = _draw_lengths(probs, size, gen)
        response_lengths = torch.randint(low, high + 1, (size,), generator=gen)
        template = chosen(cfg, "sft_template")
        rows, lengths = [], []
        for i in range(size):
            p, r = int(prompts[i]), int(response_lengths[i])
            seq = template(words[i, :p].tolist(), words[i, p:p + r].tolist())
            rows.append(seq[:cfg.seq_len + 1])          # truncation cuts responses of long prompts
            lengths.append(p)
        return rows, lengths

    def _collate(self, rows: list[list[int]], config=None) -> Batch:
        cfg = config or self.config
        width = cfg.seq_len + 1
        pad_id = pad_token_id(cfg)
        labelled = chosen(cfg, "sft_labels")
        padded, masks, pads = [], [], []
        for seq in rows:                     # padded in Python, one tensor per batch: fast
            offset = width - len(seq) if cfg.padding_side == "left" else 0
            after = width - offset - len(seq)
            padded.append([pad_id] * offset + list(seq) + [pad_id] * after)
            masks.append([False] * offset + list(labelled(seq)) + [False] * after)
            pads.append([True] * offset + [False] * len(seq) + [True] * after)
        tokens = torch.tensor(padded, dtype=torch.long)
        padding = torch.tensor(pads, dtype=torch.bool)
        supervised = chosen(cfg, "padding_labels")(tokens, torch.tensor(masks, dtype=torch.bool),
                                                   padding, pad_id)
        inputs, targets = chosen(cfg, "label_shift")(tokens, supervised)
        return Batch(inputs.contiguous(), targets.contiguous(), padding[:, :-1].contiguous())

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
        size = chosen(cfg, "batch_split")(cfg)
        start = (step * cfg.grad_accum_steps + micro) * size
        rows = []
        for i in range(start, start + size):
            epoch, index = divmod(i, self.POOL)
            rows.append(self._cached_order(epoch)[index])
        rows = torch.tensor(rows)
        pool = self._collated
        return Batch(pool.tokens[rows], pool.targets[rows], pool.key_padding[rows])

    def _cached_order(self, epoch: int) -> list[int]:
        if getattr(self, "_epoch", None) != epoch:
            self._epoch, self._order_list = epoch, self._order(epoch)
        return self._order_list

    def eval_batch(self) -> Batch:
        return self._collate(self.eval_pool, self.measured)

    def prompts(self, count: int, length: int = 4) -> torch.Tensor:
        return torch.tensor([row[1:1 + length] for row in self.pool[:count]])

    def answer_prompts(self, count: int) -> list[list[int]]:
        """Held-out prompts to answer, as the model sees them before its answer: [BOS] prompt
        [SEP] (only examples whose response survived truncation)."""
        rows = [row for row in self.eval_pool if SEP in row and row.index(SEP) < len(row) - 1]
        return [row[:row.index(SEP) + 1] for row in rows[:count]]


def make_stream(config):
    """A language-modelling stream (preference pairs: `preferences.PreferenceStream`)."""
    return SftStream(config) if config.data == "sft" else MarkovStream(config)


# --- reference points: the entropy floor and the unigram baseline ---------------------------

@dataclass(frozen=True)
class Baselines:
    """Two reference losses (nats per supervised token) for a data setting.

    floor    the cross-entropy of the true generator: the conditional entropy of each supervised
             target given everything before it, averaged over supervised positions. No model
             reaches below it on average.
    unigram  the cross-entropy of predicting the marginal frequencies of the supervised targets,
             whatever the context: where a model lands that has learnt none of the grammar.
    """
    floor: float
    unigram: float

    def bar(self, fraction: float = 0.5) -> float:
        """The loss `fraction` of the way from the floor up to the unigram baseline: 0.5 is
        halfway, smaller is stricter."""
        return self.floor + fraction * (self.unigram - self.floor)

    def learnt(self, loss: float) -> float:
        """How far `loss` has come down from the unigram baseline towards the floor: 0 at the
        baseline, 1 at the floor."""
        return (self.unigram - loss) / (self.unigram - self.floor)


def _hazard(k: int, mix: str) -> float:
    """sft: the probability that the response ends after k words, given it has k words."""
    low, high = RESPONSE_LENGTHS[mix]
    return 0.0 if k < low else 1.0 / (high - k + 1) if k <= high else 1.0


def _entropy(dist: torch.Tensor) -> float:
    dist = dist[dist > 0]
    return float(-(dist * dist.log()).sum())


@lru_cache(maxsize=32)
def _baselines(data: str, vocab_size: int, seq_len: int, mix: str) -> Baselines:
    g = grammar(vocab_size)
    n, branch = g.n_words, g.entropy
    if data != "sft":
        # targets are words 1 .. seq_len of a sampled sequence: word 1 is uniform whatever word 0
        # was; every later word has the branch entropy given the two before it
        floor = (math.log(n) + (seq_len - 1) * branch) / seq_len
        return Baselines(floor, _entropy(g.word_marginals(seq_len + 1)[1:].mean(0)))
    # sft: [BOS] p prompt words [SEP] r response words [EOS], cut to seq_len + 1 tokens; the
    # supervised targets are the response words and EOS that survive the cut. Enumerate p and r.
    low, high = RESPONSE_LENGTHS[mix]
    prompts, responses = prompt_lengths(seq_len, mix), range(low, high + 1)
    at_position = [0.0] * (seq_len + high + 1)      # expected targets that are word i of the sample
    eos = nll = count = 0.0
    for p, p_prob in prompts.items():
        weight = p_prob / len(responses)
        for r in responses:
            for j in range(p + 2, min(p + r + 2, seq_len) + 1):   # token index of a target
                k = j - (p + 2)                                    # response words before it
                h = _hazard(k, mix)
                if k < r:      # a word: the branch choice, and that the response goes on
                    at_position[p + k] += weight
                    nll += weight * (branch - (math.log(1 - h) if h else 0.0))
                else:          # EOS after exactly r words
                    eos += weight
                    nll += weight * -math.log(h)
                count += weight
    words = torch.tensor(at_position, dtype=torch.float64) @ g.word_marginals(len(at_position))
    unigram = torch.cat([words, torch.tensor([eos], dtype=torch.float64)]) / count
    return Baselines(nll / count, _entropy(unigram))


def baselines(config) -> Baselines:
    """The entropy floor and the unigram baseline of `config`'s data, in expectation over the
    sampled sequences (computed exactly from the grammar; cached). Padding side and batching do
    not change them; the data kind, the vocabulary and the sequence length do."""
    return _baselines(config.data, config.vocab_size, config.seq_len, config.sft_lengths)


def true_next_token_probs(batch: Batch, config) -> torch.Tensor:
    """(batch, time, vocab) float64: the true generator's distribution of each target given its
    prefix (the oracle model). Rows at unsupervised positions carry no meaning."""
    g = grammar(config.vocab_size)
    probs = g.probs.double()
    tokens = batch.tokens
    rows, time = tokens.shape
    if config.data != "sft":
        out = torch.empty(rows, time, config.vocab_size, dtype=torch.float64)
        out[:, 0] = 0.0
        out[:, 0, FIRST_WORD:] = 1.0 / g.n_words       # the second word is uniform
        out[:, 1:] = probs[tokens[:, :-1], tokens[:, 1:]]
        return out
    # sft: the two words before each target, skipping SEP: the last two prompt words before the
    # first response word, then the last prompt word and the first response word, and so on
    has_sep = (tokens == SEP).any(1)
    sep = (tokens == SEP).int().argmax(1)[:, None]
    j = torch.arange(time)[None, :]
    k = (j - sep).clamp(min=0)                           # response words already written
    before = torch.where(k == 0, sep - 2, torch.where(k == 1, sep - 1, j - 1)).clamp(0, time - 1)
    last = torch.where(k == 0, sep - 1, j).clamp(0, time - 1)
    out = probs[tokens.gather(1, before), tokens.gather(1, last)]
    high = RESPONSE_LENGTHS[config.sft_lengths][1]
    hazard = torch.tensor([_hazard(n, config.sft_lengths) for n in range(high + 2)],
                          dtype=torch.float64)
    h = hazard[k.clamp(max=high + 1)].expand(rows, time)[..., None]
    out = out * (1 - h)
    out[..., EOS] += h[..., 0]
    out[~has_sep] = 1.0 / config.vocab_size
    return out


def batch_baselines(batch: Batch, config) -> Baselines:
    """The same two reference points measured on one batch: the oracle's expected loss (mean
    entropy of the true next-token distribution over the supervised positions) and the
    cross-entropy of the batch's own target frequencies."""
    mask = batch.targets != IGNORE
    dist = true_next_token_probs(batch, config)[mask]
    floor = float(-(dist * dist.clamp(min=1e-300).log()).sum(-1).mean())
    counts = torch.bincount(batch.targets[mask], minlength=config.vocab_size).double()
    return Baselines(floor, _entropy(counts / counts.sum()))
