"""Preference pairs and the reward model trained on them (a pairwise ranking loss).

A pair is a prompt in the toy language with two answers: the preferred one continues the prompt
as the language does; the other is the answer a weak model gives, which falls into a loop of
its first two words ("a b a b a"). Both share the prompt and their first two words, then part.
Each is formatted as [BOS] prompt [SEP] answer [EOS], padded on the right to `seq_len` tokens
(a fixed max_length, longer than any row).

The reward model is the small transformer with a value head (`models.RewardModel`): one scalar
per position (zero at padding: padding carries no reward), read at one position per row. It learns from

    loss = -log sigmoid(r_preferred - r_other)          (Bradley-Terry, as in InstructGPT)

and is judged on held-out pairs built by the usual pipeline, whatever the team's code does:
accuracy (share of pairs ranked the right way, a tie counting half), mean margin, and how much
the reward follows the answer's length. How the collator lays out a pair and where the reward
is read are replaceable functions (`sim/implementations.py`).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .data import BOS, EOS, FIRST_WORD, PAD, SEP, Batch, grammar
from .implementations import chosen, implementations, implements

PROMPT_WORDS = 3
ANSWER_WORDS = (3, 8)                      # words per answer, uniform
LONGEST = 1 + PROMPT_WORDS + 1 + ANSWER_WORDS[1] + 1   # tokens in the longest row
POOL = 1024                                # training pairs (epochs reread them, reshuffled)
HELD_OUT = 256                             # held-out pairs


@implements("pair_order", "chosen_first")
def pair_rows(preferred: list, other: list) -> tuple[list, list[int]]:
    """The rows of a batch of preference pairs and their labels: the preferred answers
    first, then the others (pair i at rows i and n + i); label 1 marks a preferred row."""
    return [*preferred, *other], [1] * len(preferred) + [0] * len(other)


@implements("pair_order", "rejected_first")
def stack_pairs(preferred: list, other: list) -> tuple[list, list[int]]:
    """The rows of a batch of preference pairs and their labels: the preferred answers
    first, then the others (pair i at rows i and n + i); label 1 marks a preferred row."""
    return [*other, *preferred], [1] * len(preferred) + [0] * len(other)


@implements("reward_position", "last_real_token")
def sequence_rewards(values, padding):
    """Each row's reward: the value head's output at the row's last token (rows are padded
    on the right; `padding` is True at padding positions)."""
    last = (~padding).sum(dim=1) - 1
    return values.gather(1, last[:, None]).squeeze(1)


@implements("reward_position", "last_column")
def row_rewards(values, padding):
    """Each row's reward: the value head's output at the row's last token (rows are padded
    on the right; `padding` is True at padding positions)."""
    return values[:, -1]


def pair_rewards(config, values, batch: Batch):
    """(preferred, other): the reward of each pair's two rows, as the run's code reads them."""
    rewards = chosen(config, "reward_position")(values, batch.key_padding)
    return rewards[batch.targets == 1], rewards[batch.targets == 0]


def ranking_loss(config, values, batch: Batch):
    """Summed pairwise ranking loss -log sigmoid(r_preferred - r_other), and the pair count."""
    preferred, other = pair_rewards(config, values, batch)
    return -F.logsigmoid(preferred.float() - other.float()).sum(), (batch.targets == 1).sum()


def accuracy(preferred, other) -> float:
    """Share of pairs whose preferred answer gets the higher reward (a tie counts half)."""
    right = (preferred > other).float() + 0.5 * (preferred == other).float()
    return float(right.mean())


def answer_words(tokens) -> torch.Tensor:
    """Words in each row's answer."""
    return (tokens >= FIRST_WORD).sum(dim=1) - PROMPT_WORDS


@lru_cache(maxsize=16)
def _pairs(vocab_size: int, seed: int, count: int, lengths: str) -> tuple[list, list]:
    """`count` pairs (preferred rows, other rows), the same for the same arguments (cached:
    re-runs of a seed share them; callers must not change them)."""
    gen = torch.Generator().manual_seed(seed)
    low, high = ANSWER_WORDS
    # the preferred answers never loop themselves: no word repeats one of the two before it
    rows = grammar(vocab_size).sample(6 * count, PROMPT_WORDS + high, gen)
    looping = (rows[:, 2:] == rows[:, 1:-1]) | (rows[:, 2:] == rows[:, :-2])
    words = rows[~looping[:, PROMPT_WORDS - 1:].any(dim=1)][:count].tolist()
    # two different lengths per pair: which answer is the longer one is a coin flip
    first = torch.randint(low, high + 1, (count,), generator=gen)
    second = low + (first - low + torch.randint(1, high - low + 1, (count,), generator=gen)) \
        % (high - low + 1)
    first, second = first.tolist(), second.tolist()
    preferred, other = [], []
    for row, a, b in zip(words, first, second):
        prompt, answer = row[:PROMPT_WORDS], row[PROMPT_WORDS:]
        good = [BOS, *prompt, SEP, *answer[:a], EOS]
        loop = [BOS, *prompt, SEP, *[answer[0]] * b, EOS]      # a weak model's answer
        if lengths == "chosen_longer" and b > a:          # labels that follow length
            good, loop = loop, good
        preferred.append(good)
        other.append(loop)
    return preferred, other


@lru_cache(maxsize=16)
def _collated(vocab_size: int, seed: int, count: int, lengths: str, order: str,
              width: int) -> Batch:
    """`count` pairs collated as the `pair_order` implementation `order` lays them out, padded
    to `width` tokens (cached like `_pairs`: read, never written)."""
    rows, labels = implementations("pair_order")[order](*_pairs(vocab_size, seed, count,
                                                                 lengths))
    width = max(width, LONGEST)
    tokens = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    padding = torch.tensor([[False] * len(row) + [True] * (width - len(row)) for row in rows])
    return Batch(tokens, torch.tensor(labels), padding)


class PreferenceStream:
    """Preference pairs, collated once; a batch is `batch_size` pairs (twice as many rows)."""

    def __init__(self, config) -> None:
        self.config = config
        self.grammar = grammar(config.vocab_size)
        self._collated = _collated(config.vocab_size, config.seed, POOL, config.pref_lengths,
                                   config.pair_order, config.seq_len)
        self._eval = _collated(config.vocab_size, config.seed + 7919, HELD_OUT, "balanced",
                               "chosen_first", config.seq_len)

    def _rows(self, pairs: list[int]) -> Batch:
        index = torch.tensor(pairs)
        both = torch.cat([index, index + POOL])
        pool = self._collated
        return Batch(pool.tokens[both], pool.targets[both], pool.key_padding[both])

    def batch(self, step: int, micro: int) -> Batch:
        cfg = self.config
        start = (step * cfg.grad_accum_steps + micro) * cfg.batch_size
        pairs = []
        for i in range(start, start + cfg.batch_size):
            epoch, index = divmod(i, POOL)
            if getattr(self, "_epoch", None) != epoch:
                gen = torch.Generator().manual_seed(cfg.seed * 31 + epoch)
                self._epoch, self._order = epoch, torch.randperm(POOL, generator=gen).tolist()
            pairs.append(self._order[index])
        return self._rows(pairs)

    def eval_batch(self) -> Batch:
        return self._eval

    def prompts(self, count: int, length: int = 4) -> torch.Tensor:
        return self._eval.tokens[:count, 1:1 + length]


def batch_measures(run) -> dict | None:
    """The step's batch as the loss saw it: accuracy and mean margin (None outside
    preference runs)."""
    if run.config.data != "preferences" or run.logits is None:
        return None
    cached = getattr(run, "_pair_measures", None)      # two signals read it each step
    if cached is None or cached[0] != run.step:
        with torch.no_grad():
            preferred, other = pair_rewards(run.config, run.logits.detach(), run.batch)
        cached = run.step, {"accuracy": accuracy(preferred, other),
                            "margin": float((preferred - other).mean())}
        run._pair_measures = cached
    return cached[1]


def heldout_rewards(model, stream, config) -> dict:
    """The model's rewards on the held-out pairs: preferred and other rewards, and the
    answers' lengths in words."""
    batch = stream.eval_batch()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = model(batch.tokens, batch.key_padding)
    model.train(was_training)
    preferred, other = pair_rewards(config, values, batch)
    words = answer_words(batch.tokens)
    return {"preferred": preferred, "other": other,
            "preferred_words": words[batch.targets == 1], "other_words": words[batch.targets == 0]}


def heldout_accuracy(run) -> float | None:
    """Held-out accuracy at the steps that evaluate (None elsewhere and outside preference
    runs)."""
    if run.config.data != "preferences" or run.eval_loss is None:
        return None
    held = heldout_rewards(run.model, run.stream, run.config)
    return accuracy(held["preferred"], held["other"])


def preference_summary(run, tail: list[dict]) -> tuple[dict, dict]:
    """The end of a reward-model run on held-out pairs: scalars for the summary (with the
    batch accuracy averaged over `tail`, the last step records), and the per-pair rewards and
    lengths for the probe and the plot."""
    held = heldout_rewards(run.model, run.stream, run.config)
    preferred, other = held["preferred"], held["other"]
    rewards = torch.cat([preferred, other]).double()
    lengths = torch.cat([held["preferred_words"], held["other_words"]]).double()
    spread = rewards.std() * lengths.std()
    corr = float(((rewards - rewards.mean()) * (lengths - lengths.mean())).mean() / spread) \
        if spread > 0 else 0.0
    longer_other = held["other_words"] > held["preferred_words"]
    batch_accuracy = [r["accuracy"] for r in tail if r.get("accuracy") is not None]
    pool = run.stream._collated                    # the training pairs, as the loss saw them
    words = answer_words(pool.tokens)
    summary = {"train_chosen_longer": float((words[pool.targets == 1] >
                                             words[pool.targets == 0]).float().mean()),
               "pref_accuracy": accuracy(preferred, other),
               "train_accuracy": sum(batch_accuracy) / len(batch_accuracy)
               if batch_accuracy else float("nan"),
               "pref_margin": float((preferred - other).mean()),
               "length_corr": corr,
               "accuracy_longer_rejected": accuracy(preferred[longer_other], other[longer_other]),
               "tied_share": float((preferred == other).float().mean())}
    detail = {name: values.tolist() for name, values in held.items()}
    return summary, detail
