"""DPO: the team's pretrained language model tuned directly on preference pairs.

The pairs are those of `preferences.py` (a prompt, a good answer, a weak model's looping one;
each row [BOS] prompt [SEP] answer [EOS] padded on the right). The policy is the pretrained
transformer LM; the reference is the same model as training starts, frozen. With the sequence
log-probability of an answer summed over its tokens (the prompt left out),

    ratio(y)  = log pi_theta(y | x) - log pi_ref(y | x)
    loss      = -log sigmoid(beta * (ratio(y_chosen) - ratio(y_rejected)))      (Rafailov et al.)

beta * ratio(y) is the answer's implicit reward; beta sets how far the policy may move from the
reference for a given preference (the KL penalty DPO's derivation starts from).

The prompt's tokens would cancel in that difference (both answers share the prompt and a causal
model reads it the same way in both rows), so leaving the prompt in a summed log-prob changes
nothing (tested); what the team's code can get wrong is how the reference is made and where
beta enters the loss (`sim/implementations.py` slots `dpo_reference` and `dpo_scale`).

The model is `models.DPOModel`. What a run reports is measured by the grader's own code on
held-out pairs, against the policy as it started, the pretrained model (not the run's
reference): the implicit-reward accuracy, the log-ratios of chosen and rejected answers, and
how well the policy still predicts the words of good answers (loss and KL per word).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .data import FIRST_WORD, Batch
from .implementations import chosen, implements
from .preferences import PROMPT_WORDS, accuracy

ANSWER_START = 1 + PROMPT_WORDS + 1            # [BOS] prompt [SEP]: the answer's first index


@implements("dpo_reference", "deep_copy")
def reference_model(policy):
    """DPO's reference: the policy as training starts, as a model of its own. The optimizer
    only holds the policy's parameters and the reference's log-probs are taken without
    gradient, so it stays where it started."""
    return copy.deepcopy(policy)


@implements("dpo_reference", "shallow_copy")
def make_reference(policy):
    """DPO's reference: the policy as training starts, as a model of its own. The optimizer
    only holds the policy's parameters and the reference's log-probs are taken without
    gradient, so it stays where it started."""
    return copy.copy(policy)


@implements("dpo_scale", "beta_on_margin")
def pair_logits(chosen_ratio, rejected_ratio, beta):
    """The DPO logit of each pair: the chosen answer's implicit reward minus the rejected
    one's, an implicit reward being beta times the answer's log-ratio to the reference."""
    chosen_rewards = beta * chosen_ratio
    rejected_rewards = beta * rejected_ratio
    return chosen_rewards - rejected_rewards


@implements("dpo_scale", "beta_twice")
def preference_logits(chosen_ratio, rejected_ratio, beta):
    """The DPO logit of each pair: the chosen answer's implicit reward minus the rejected
    one's, an implicit reward being beta times the answer's log-ratio to the reference."""
    chosen_rewards = beta * chosen_ratio
    rejected_rewards = beta * rejected_ratio
    return beta * (chosen_rewards - rejected_rewards)


@implements("dpo_scale", "beta_divides")
def dpo_logits(chosen_ratio, rejected_ratio, beta):
    """The DPO logit of each pair: the chosen answer's implicit reward minus the rejected
    one's, an implicit reward being beta times the answer's log-ratio to the reference."""
    chosen_rewards = chosen_ratio / beta
    rejected_rewards = rejected_ratio / beta
    return chosen_rewards - rejected_rewards


def answer_logps(logits, tokens, padding, start: int = ANSWER_START):
    """Each row's log-probability of its answer: the sum over the answer's tokens (its words
    and EOS; from index `start` on, padding left out) of log p(token | what precedes it)."""
    picked = _token_logps(logits, tokens)
    positions = torch.arange(1, tokens.shape[1], device=tokens.device)
    keep = (positions >= start)[None, :] & ~padding[:, 1:]
    return (picked * keep).sum(dim=1)


def log_ratios(output, batch: Batch):
    """(chosen, rejected): each pair's log pi_theta(y|x) - log pi_ref(y|x) for both answers."""
    ratio = answer_logps(output[0], batch.tokens, batch.key_padding) \
        - answer_logps(output[1], batch.tokens, batch.key_padding)
    return ratio[batch.targets == 1], ratio[batch.targets == 0]


def dpo_loss(config, output, batch: Batch):
    """Summed DPO loss -log sigmoid(logit) over the batch's pairs, and the pair count."""
    chosen_ratio, rejected_ratio = log_ratios(output, batch)
    logits = chosen(config, "dpo_scale")(chosen_ratio, rejected_ratio, config.dpo_beta)
    return -F.logsigmoid(logits).sum(), (batch.targets == 1).sum()


def batch_measures(run) -> dict:
    """The step's batch as the team's loss saw it: the mean log-ratios of chosen and rejected
    answers, the mean pair logit (the implicit reward margin) and the share of pairs whose
    logit is positive (accuracy)."""
    cached = getattr(run, "_dpo_measures", None)      # several signals read it each step
    if cached is None or cached[0] != run.step:
        with torch.no_grad():
            chosen_ratio, rejected_ratio = log_ratios(run.logits.detach(), run.batch)
            logits = chosen(run.config, "dpo_scale")(chosen_ratio, rejected_ratio,
                                                     run.config.dpo_beta)
        cached = run.step, {"accuracy": accuracy(logits, torch.zeros_like(logits)),
                            "margin": float(logits.mean()),
                            "chosen_logratio": float(chosen_ratio.mean()),
                            "rejected_logratio": float(rejected_ratio.mean())}
        run._dpo_measures = cached
    return cached[1]


def per_token_kl(logits, reference):
    """KL(policy || reference) of the next-token distribution at each position (nats)."""
    logp, logq = torch.log_softmax(logits.float(), -1), torch.log_softmax(reference.float(), -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def heldout(run) -> dict:
    """The policy on the held-out pairs, by the grader's own code: per pair the log-ratios
    (against the pretrained model) of chosen and rejected answers, and per chosen answer the
    policy's and the pretrained model's summed log-prob, its token count and the per-token KL
    of the policy from the pretrained model. Measured once per step (the last step's
    evaluation and the run's summary share it: the model does not change in between)."""
    cached = getattr(run, "_dpo_heldout", None)
    if cached is None or cached[0] != run.step:
        run._dpo_heldout = run.step, _measure_heldout(run)
    return run._dpo_heldout[1]


def _measure_heldout(run) -> dict:
    batch = run.stream.eval_batch()
    policy = run.model.policy
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        logits = policy(batch.tokens, batch.key_padding)
        reference = run.model.start(batch.tokens, batch.key_padding)
    policy.train(was_training)
    now = answer_logps(logits, batch.tokens, batch.key_padding)
    before = answer_logps(reference, batch.tokens, batch.key_padding)
    good = batch.targets == 1
    # the language itself: in the chosen (good) answers, the positions that predict a word from
    # the two words before it (not the first word after [SEP], not EOS)
    targets = batch.tokens[:, 1:]
    positions = torch.arange(1, batch.tokens.shape[1])
    words = good[:, None] & (positions > ANSWER_START)[None, :] & (targets >= FIRST_WORD)
    ratio = now - before
    return {"chosen_ratio": ratio[good], "rejected_ratio": ratio[~good],
            "chosen_logp": now[good], "rejected_logp": now[~good],
            "word_kl": per_token_kl(logits[:, :-1], reference[:, :-1])[words],
            "word_nll": -_token_logps(logits, batch.tokens)[words],
            "word_nll_before": -_token_logps(reference, batch.tokens)[words]}


def _token_logps(logits, tokens):
    """log p(token t+1 | tokens up to t) at each position t."""
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logps.gather(2, tokens[:, 1:, None]).squeeze(2)


def heldout_accuracy(run) -> float:
    held = heldout(run)
    return accuracy(held["chosen_ratio"], held["rejected_ratio"])


def dpo_summary(run, tail: list[dict]) -> tuple[dict, dict]:
    """The end of a DPO run on held-out pairs (scalars for the summary, with the logged batch
    measures averaged over `tail`, the last step records) and the per-pair log-ratios for the
    probe."""
    held = heldout(run)
    batch = [r for r in tail if r.get("accuracy") is not None]

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values) if values else float("nan")
    summary = {
        "pref_accuracy": accuracy(held["chosen_ratio"], held["rejected_ratio"]),
        "chosen_logratio": float(held["chosen_ratio"].mean()),
        "rejected_logratio": float(held["rejected_ratio"].mean()),
        "logratio_margin": float((held["chosen_ratio"] - held["rejected_ratio"]).mean()),
        "policy_prefers_chosen": accuracy(held["chosen_logp"], held["rejected_logp"]),
        "kl_words": float(held["word_kl"].mean()),
        "nll_words": float(held["word_nll"].mean()),
        "nll_words_before": float(held["word_nll_before"].mean()),
        "train_accuracy": mean(r["accuracy"] for r in batch),
        "train_margin": mean(r["margin"] for r in batch),
        "train_logratio_margin": mean(r["chosen_logratio"] - r["rejected_logratio"]
                                      for r in batch),
    }
    return summary, {"chosen_ratio": held["chosen_ratio"].tolist(),
                     "rejected_ratio": held["rejected_ratio"].tolist()}
