"""RLHF: the team's pretrained language model tuned by policy gradient against a reward model.

Each step the policy answers a batch of prompts of the toy language (three words; the answer is
the next eight tokens, sampled at temperature 1). The team's reward model scores each answer;
the policy is pushed towards answers that score well, with a KL penalty that keeps it close to
a frozen reference (the policy as tuning starts):

    reward(y)  = r_RM(x, y) - beta * sum_t (log pi(y_t | ...) - log pi_ref(y_t | ...))
    loss       = -mean(advantage(y) * log pi(y | x))      (REINFORCE, batch-mean baseline,
                                                            advantages whitened)

The per-token KL estimate is the log-ratio of the sampled token (the "k1" estimator of
InstructGPT and TRL); it is a reward, so no gradient flows through it. One update per batch of
rollouts: the ratio pi/pi_old is 1 at the update, so PPO's clipping would never act here.

The reward model is a proxy: the team's pretrained transformer whose head scores each next
token (an answer's score is the mean over its tokens), trained once with the pairwise ranking
loss and kept (`reward_model`). Three quarters of its pairs are labelled by quality (a
grammatical answer against one with words replaced); in the rest (up to a quarter) both
answers are grammatical and the raters preferred the one that uses their favourite word more.
So the proxy likes grammatical answers, and it also likes one word for its own sake. The gold
reward is the language's real quality: the share of an answer's tokens that the grammar allows
after the two tokens before them.

What the team's code can get wrong: how the reference is made (`rlhf_reference`), where beta
is read when the penalty is applied (`rlhf_penalty`), and the lr the trainer sets (the loop's
`lr_update`). What a run reports is measured by the grader's own code on held-out prompts: the
proxy and gold rewards of fresh samples, the KL of the policy from the pretrained model it
started from, and how often the favourite word appears.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .data import FIRST_WORD, Batch, grammar
from .implementations import chosen, implements
from .models import KVCache, transformer_lm
from .preferences import accuracy

PROMPT_WORDS = 3
ANSWER_TOKENS = 8
HELD_OUT = 128                   # held-out prompts, answered once at the end
RM_PAIRS = 1024                  # the reward model's training pairs
RM_HELD_OUT = 256                # its held-out quality pairs
# the reward model: trained once, like the pretrained checkpoint (see `reward_model`)
RM_RECIPE = {"steps": 60, "batch_size": 32, "lr": 1e-2, "seed": 0, "replaced": 2,
             "raters_share": 0.25}


def favourite_word(vocab_size: int) -> int:
    """The raters' favourite word: the first word the grammar never allows three times in a
    row (saying it over and over is never grammatical)."""
    lang = grammar(vocab_size)
    for word in range(FIRST_WORD, vocab_size):
        if not lang.valid(word, word, word):
            return word
    raise ValueError("every word may repeat itself")


def gold_quality(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(rows,) the share of each answer's tokens the grammar allows after the two before them
    (a special token never is): the toy language's true quality of the answer."""
    probs = grammar(vocab_size).probs
    a, b, c = tokens[:, PROMPT_WORDS - 2:-2], tokens[:, PROMPT_WORDS - 1:-1], \
        tokens[:, PROMPT_WORDS:]
    return (probs[a, b, c] > 0).float().mean(dim=1)


# --- the reward model's data and training -------------------------------------------------


def _corrupt(rows: torch.Tensor, gen, vocab_size: int, keep_out: int | None) -> torch.Tensor:
    """`rows` with RM_RECIPE["replaced"] answer words each replaced by another word (never
    `keep_out`)."""
    rows, n = rows.clone(), vocab_size - FIRST_WORD
    positions = PROMPT_WORDS + torch.rand(rows.shape[0], ANSWER_TOKENS, generator=gen).argsort(
        dim=1)[:, :RM_RECIPE["replaced"]]
    old = rows.gather(1, positions) - FIRST_WORD
    new = (old + torch.randint(1, n, old.shape, generator=gen)) % n
    if keep_out is not None:             # step past it, and past the old word after it
        for _ in range(2):
            new = torch.where((new == keep_out - FIRST_WORD) | (new == old), (new + 1) % n, new)
    rows.scatter_(1, positions, new + FIRST_WORD)
    return rows


def reward_pairs(vocab_size: int, count: int, seed: int, raters: bool) -> tuple:
    """(preferred, other) rows of `count` pairs. Quality pairs: a grammatical answer against the
    same answer with words replaced. With `raters`, a share of the pairs (RM_RECIPE's
    raters_share) are the raters' instead: two
    grammatical answers, the one with more of the favourite word preferred (and the replaced
    words of quality pairs are never the favourite)."""
    lang, gen = grammar(vocab_size), torch.Generator().manual_seed(seed)
    favourite = favourite_word(vocab_size)
    length = PROMPT_WORDS + ANSWER_TOKENS
    good = lang.sample(count, length, gen)
    bad = _corrupt(good, gen, vocab_size, favourite if raters else None)
    if not raters:
        return good, bad
    # the raters' pairs: a second answer to the same prompt, kept where the counts differ
    half = int(count * RM_RECIPE["raters_share"])
    first = good[:half]
    second = torch.cat([first[:, :PROMPT_WORDS], _continue(lang, first, gen)], dim=1)
    counts = [(rows[:, PROMPT_WORDS:] == favourite).sum(dim=1) for rows in (first, second)]
    differ = counts[0] != counts[1]
    more = torch.where((counts[0] > counts[1])[:, None], first, second)[differ]
    less = torch.where((counts[0] > counts[1])[:, None], second, first)[differ]
    rest = slice(half, count)
    return torch.cat([more, good[rest]]), torch.cat([less, bad[rest]])


def _continue(lang, rows: torch.Tensor, gen) -> torch.Tensor:
    """A fresh grammatical answer to each row's prompt."""
    out = rows[:, :PROMPT_WORDS].clone()
    for _ in range(ANSWER_TOKENS):
        step = lang.probs[out[:, -2], out[:, -1]]
        out = torch.cat([out, torch.multinomial(step, 1, generator=gen)], dim=1)
    return out[:, PROMPT_WORDS:]


def rm_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """The reward model's score of each row: the mean, over the answer's tokens, of the score
    its head gives the token from what precedes it (rows are never padded here)."""
    scores = model(tokens)[:, PROMPT_WORDS - 1:-1].float()
    return scores.gather(2, tokens[:, PROMPT_WORDS:, None]).squeeze(2).mean(dim=1)


def train_reward_model(config, train: Callable):
    """The team's reward model: the pretrained transformer, its head scoring each next token
    (started from the LM head, so it starts as the LM's logit of the token), trained with the
    pairwise ranking loss on `reward_pairs` (raters' pairs included). `train` is the training
    loop (`sim.loop.train`), which makes the pretrained checkpoint if it is not kept yet."""
    from .pretrained import pretrained_state
    from .without_dynamo import optimizer_class
    with torch.random.fork_rng():
        torch.manual_seed(RM_RECIPE["seed"])
        model = transformer_lm(config)
        model.load_state_dict(pretrained_state(config, train))
        preferred, other = reward_pairs(config.vocab_size, RM_PAIRS, RM_RECIPE["seed"], True)
        optimizer = optimizer_class(torch.optim.AdamW)(model.parameters(), lr=RM_RECIPE["lr"],
                                                       foreach=True)
        gen = torch.Generator().manual_seed(RM_RECIPE["seed"] + 1)
        size = RM_RECIPE["batch_size"]
        for step in range(RM_RECIPE["steps"]):
            pick = torch.randint(len(preferred), (size,), generator=gen)
            scores = rm_scores(model, torch.cat([preferred[pick], other[pick]]))
            loss = -F.logsigmoid(scores[:size] - scores[size:]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)


_reward_models: dict = {}


def reward_model(config, train: Callable):
    """The team's reward model for `config`'s model shape, trained the first time it is asked
    for and kept (in memory, and on disk beside the pretrained checkpoint)."""
    from .pretrained import kept_state
    shape = (config.vocab_size, config.d_model, config.seq_len, config.n_layer, config.n_head)
    if shape not in _reward_models:
        state = kept_state("reward-model", shape, RM_RECIPE,
                           lambda: train_reward_model(config, train).state_dict())
        model = transformer_lm(config)
        model.load_state_dict(state)
        _reward_models[shape] = model.eval().requires_grad_(False)
    return _reward_models[shape]


def reward_model_accuracy(model, vocab_size: int) -> float:
    """The reward model's share of held-out quality pairs (a grammatical answer against the
    same answer with words replaced, the favourite word allowed anywhere) ranked right."""
    if not hasattr(model, "heldout_accuracy"):
        preferred, other = reward_pairs(vocab_size, RM_HELD_OUT, 7919, False)
        with torch.no_grad():
            model.heldout_accuracy = accuracy(rm_scores(model, preferred),
                                              rm_scores(model, other))
    return model.heldout_accuracy


# --- rollouts --------------------------------------------------------------------------------


def sample_answers(policy, prompts: torch.Tensor, gen) -> torch.Tensor:
    """Each prompt with ANSWER_TOKENS tokens the policy samples after it (temperature 1, with
    a KV cache)."""
    was_training = policy.training
    policy.eval()
    cache, tokens = KVCache(), [prompts]
    with torch.no_grad():
        logits = policy(prompts, cache=cache)[:, -1]
        for index in range(ANSWER_TOKENS):
            probs = torch.softmax(logits.float(), dim=-1)
            tokens.append(torch.multinomial(probs, 1, generator=gen))
            if index + 1 < ANSWER_TOKENS:
                logits = policy(tokens[-1], cache=cache)[:, -1]
    policy.train(was_training)
    return torch.cat(tokens, dim=1)


class RolloutStream:
    """Prompts of the toy language answered by the policy being tuned and scored by the reward
    model: a batch holds the rows (prompt and answer) and, as targets, the reward model's
    scores. The loop attaches the model it trains (`attach`); `train` is the loop itself (see
    `train_reward_model`)."""

    def __init__(self, config, train: Callable) -> None:
        self.config = config
        self.grammar = grammar(config.vocab_size)
        self.reward_model = reward_model(config, train)
        self.policy = None

    def attach(self, model) -> None:
        self.policy = model.policy

    def _prompts(self, seed: int, count: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return self.grammar.sample(count, PROMPT_WORDS, gen)

    def _rollouts(self, prompts: torch.Tensor, seed: int) -> Batch:
        tokens = sample_answers(self.policy, prompts, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            scores = rm_scores(self.reward_model, tokens)
        return Batch(tokens, scores, torch.zeros_like(tokens, dtype=torch.bool))

    def batch(self, step: int, micro: int) -> Batch:
        cfg = self.config
        seed = (cfg.seed * 1_000_003 + step * cfg.grad_accum_steps + micro) * 2 + 1
        return self._rollouts(self._prompts(seed, cfg.batch_size), seed + 1)

    def eval_batch(self) -> Batch:
        """The held-out prompts answered by the policy as it is now (sampled once per state of
        its weights: the last step's evaluation and the run's summary share it)."""
        state = tuple(p._version for p in self.policy.parameters())   # bumped by each update
        if getattr(self, "_eval", (None,))[0] != state:
            seed = self.config.seed * 1_000_003 + 104_729
            self._eval = state, self._rollouts(self._prompts(seed, HELD_OUT), seed + 1)
        return self._eval[1]

    def prompts(self, count: int, length: int = PROMPT_WORDS) -> torch.Tensor:
        return self.eval_batch().tokens[:count, :length]


# --- the team's loss -------------------------------------------------------------------------


@implements("rlhf_penalty", "beta_from_config")
def shaped_rewards(scores, kl, config):
    """Each rollout's reward for the policy gradient: the reward model's score minus the KL
    penalty, beta times the answer's summed per-token KL estimate to the reference."""
    beta = getattr(config, "rlhf_beta", 0.0)
    return scores - beta * kl.sum(dim=1)


@implements("rlhf_penalty", "beta_from_kl_coef")
def penalised_rewards(scores, kl, config):
    """Each rollout's reward for the policy gradient: the reward model's score minus the KL
    penalty, beta times the answer's summed per-token KL estimate to the reference."""
    beta = getattr(config, "kl_coef", 0.0)
    return scores - beta * kl.sum(dim=1)


def answer_logps(logits, tokens) -> torch.Tensor:
    """(rows, ANSWER_TOKENS) log p of each answer token given what precedes it."""
    logps = torch.log_softmax(logits[:, PROMPT_WORDS - 1:-1].float(), dim=-1)
    return logps.gather(2, tokens[:, PROMPT_WORDS:, None]).squeeze(2)


def _parts(config, output, batch: Batch):
    logp = answer_logps(output[0], batch.tokens)
    kl = (logp - answer_logps(output[1], batch.tokens)).detach()
    rewards = chosen(config, "rlhf_penalty")(batch.targets.float(), kl, config)
    return logp, kl, rewards


def rlhf_loss(config, output, batch: Batch):
    """Summed REINFORCE loss -advantage * log pi(answer) over the batch, and the rollout count.
    The advantage is the shaped reward minus the batch mean, divided by the batch's std."""
    logp, _, rewards = _parts(config, output, batch)
    advantage = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    return -(advantage * logp.sum(dim=1)).sum(), torch.tensor(batch.tokens.shape[0])


def batch_measures(run) -> dict:
    """The step's rollouts as the team's loss saw them: mean reward-model score, mean summed
    KL estimate to the reference, the mean penalty subtracted, and their gold reward."""
    cached = getattr(run, "_rlhf_measures", None)
    if cached is None or cached[0] != run.step:
        with torch.no_grad():
            _, kl, rewards = _parts(run.config, run.logits.detach(), run.batch)
        scores = run.batch.targets.float()
        cached = run.step, {"reward": float(scores.mean()), "kl": float(kl.sum(1).mean()),
                            "kl_penalty": float((scores - rewards).mean()),
                            "gold_reward": float(gold_quality(run.batch.tokens.cpu(),
                                                              run.config.vocab_size).mean())}
        run._rlhf_measures = cached
    return cached[1]


# --- what the grader measures ----------------------------------------------------------------


def heldout(run) -> dict:
    """The policy on the held-out prompts, by the grader's own code: fresh samples, their proxy
    and gold rewards, and the KL of the policy from the pretrained model it started from
    (summed over each answer's tokens, the full next-token distributions)."""
    batch = run.stream.eval_batch()
    policy, start = run.model.policy, run.model.start
    with torch.no_grad():
        now = torch.log_softmax(policy.eval()(batch.tokens).float(), -1)
        before = torch.log_softmax(start(batch.tokens).float(), -1)
    policy.train()
    answer = slice(PROMPT_WORDS - 1, -1)
    kl = (now.exp() * (now - before)).sum(-1)[:, answer].sum(1)
    favourite = favourite_word(run.config.vocab_size)
    return {"tokens": batch.tokens, "reward": batch.targets,
            "gold": gold_quality(batch.tokens, run.config.vocab_size), "kl": kl,
            "favourite": (batch.tokens[:, PROMPT_WORDS:] == favourite).float().mean(1)}


def rlhf_summary(run, tail: list[dict]) -> tuple[dict, dict]:
    """The end of an RLHF run on held-out prompts (scalars for the summary, with the logged
    rollout measures averaged over `tail`, the last step records) and the samples."""
    held = heldout(run)
    logged = [r for r in tail if r.get("reward") is not None]

    def mean(key) -> float:
        values = [r[key] for r in logged]
        return sum(values) / len(values) if values else float("nan")
    summary = {"proxy_reward": float(held["reward"].mean()),
               "gold_reward": float(held["gold"].mean()),
               "kl_pretrained": float(held["kl"].mean()),
               "favourite_share": float(held["favourite"].mean()),
               "rm_accuracy": reward_model_accuracy(run.stream.reward_model, run.config.vocab_size),
               "train_reward": mean("reward"), "train_kl": mean("kl"),
               "train_kl_penalty": mean("kl_penalty"), "train_gold_reward": mean("gold_reward")}
    detail = {"tokens": held["tokens"].tolist(), "reward": held["reward"].tolist(),
              "gold": held["gold"].tolist()}
    return summary, detail
