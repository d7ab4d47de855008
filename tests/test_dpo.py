"""dpo_stuck: DPO's sequence log-probs, its reference model, where beta enters the loss."""
import dataclasses
import math

import pytest
import torch

from debugsim.sim import app
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.dpo import ANSWER_START, answer_logps, dpo_loss
from debugsim.sim.implementations import chosen, implementations, source
from debugsim.sim.models import DPOModel, TinyTransformer
from debugsim.sim.preferences import PreferenceStream

BASE = app.scenario("dpo_stuck").base


def _config(**settings):
    return with_overrides(TrainConfig(), {**BASE, "base_model": "scratch", **settings})


def _model(config, seed):
    torch.manual_seed(seed)
    return TinyTransformer(config.vocab_size, config.seq_len, config.d_model, config.n_layer,
                           config.n_head)


def test_the_prompt_cancels_out_of_summed_log_ratios():
    """Why 'prompt tokens in the log-probs' is not a cause here: both answers share the prompt,
    so with summed log-probs the prompt's terms cancel in ratio_chosen - ratio_rejected."""
    config = _config()
    batch = PreferenceStream(config).batch(0, 0)
    policy, reference = _model(config, 1), _model(config, 2)
    with torch.no_grad():
        logits = policy(batch.tokens, batch.key_padding), reference(batch.tokens,
                                                                    batch.key_padding)

    def margins(start):
        ratio = answer_logps(logits[0], batch.tokens, batch.key_padding, start) - \
            answer_logps(logits[1], batch.tokens, batch.key_padding, start)
        return ratio[batch.targets == 1] - ratio[batch.targets == 0]
    with_prompt, answers_only = margins(1), margins(ANSWER_START)
    assert not torch.allclose(answer_logps(logits[0], batch.tokens, batch.key_padding, 1),
                              answer_logps(logits[0], batch.tokens, batch.key_padding))
    assert torch.allclose(with_prompt, answers_only, atol=1e-4)


def test_answer_log_probs_cover_the_answer_and_eos_only():
    config = _config()
    batch = PreferenceStream(config).batch(0, 0)
    uniform = torch.zeros(*batch.tokens.shape, config.vocab_size)
    tokens = (~batch.key_padding).sum(1) - ANSWER_START          # answer words and EOS
    expected = -tokens.float() * math.log(config.vocab_size)
    assert torch.allclose(answer_logps(uniform, batch.tokens, batch.key_padding), expected)


def test_a_shallow_copy_shares_the_policys_weights_a_deep_copy_does_not():
    deep = DPOModel(_config())
    shallow = DPOModel(_config(dpo_reference="shallow_copy"))
    assert deep.reference.head.weight is not deep.policy.head.weight
    assert shallow.reference.head.weight is shallow.policy.head.weight
    for model in (deep, shallow):                 # the optimizer sees the policy's only
        assert {id(p) for p in model.parameters()} == {id(p) for p in model.policy.parameters()}


def test_beta_enters_the_pair_logit_once_twice_or_dividing():
    ratios = torch.tensor([3.0]), torch.tensor([-2.0])
    logits = {name: float(f(*ratios, 0.2)) for name, f in implementations("dpo_scale").items()}
    assert logits == pytest.approx({"beta_on_margin": 1.0, "beta_twice": 0.2,
                                    "beta_divides": 25.0})


def test_the_dpo_loss_starts_at_log_2_and_counts_pairs():
    config = _config()
    batch = PreferenceStream(config).batch(0, 0)
    model = DPOModel(config)
    with torch.no_grad():
        loss, pairs = dpo_loss(config, model(batch.tokens, batch.key_padding), batch)
    assert int(pairs) == BASE["batch_size"]
    assert float(loss) / int(pairs) == pytest.approx(math.log(2), abs=1e-6)


def test_a_reference_sharing_the_weights_pins_the_loss_at_log_2_while_the_policy_moves():
    shared = app.execute(app.prepare("dpo_stuck", 0, "reference_is_policy",
                                     settings={"steps": 3}))
    assert all(r["loss"] == pytest.approx(math.log(2), abs=1e-6) for r in shared.records)
    assert all(r["chosen_logratio"] == 0 and r["rejected_logratio"] == 0
               for r in shared.records)
    assert all(r["grad_norm"] > 0 and r["update_ratio"] > 0 for r in shared.records)
    assert shared.summary["logratio_margin"] > 0            # held out, against the real one
    healthy = app.execute(app.prepare("dpo_stuck", 0, settings={"steps": 3}))
    assert healthy.records[0]["chosen_logratio"] == 0            # the first step: identical
    assert healthy.records[-1]["chosen_logratio"] != 0
    assert healthy.records[-1]["loss"] < math.log(2)


def test_the_code_probe_shows_each_bug_and_nothing_marks_it():
    healthy = _config()
    for slot, broken in (("dpo_reference", "shallow_copy"), ("dpo_scale", "beta_twice"),
                         ("dpo_scale", "beta_divides")):
        shown = source(dataclasses.replace(healthy, **{slot: broken}), slot)
        assert shown != source(healthy, slot)
        assert "bug" not in shown.lower() and broken not in shown


def test_beta_is_a_setting_of_dpo_runs_only():
    assert _config().recipe_dict()["dpo_beta"] == BASE["dpo_beta"]
    assert "dpo_beta" not in TrainConfig().recipe_dict()
    assert not {"dpo_reference", "dpo_scale"} & set(_config().recipe_dict())
    assert chosen(_config(), "dpo_reference") is not chosen(
        _config(dpo_reference="shallow_copy"), "dpo_reference")


def test_the_criterion_judges_learning_and_drift():
    criterion = app.scenario("dpo_stuck").criterion
    healthy = {"pref_accuracy": 1.0, "nll_words": 2.8, "rejected_logratio": -35.0}
    assert all(c.ok for c in criterion.judge(healthy))
    drifted = {c.name: c.ok for c in criterion.judge({**healthy, "nll_words": 4.0})}
    assert drifted["loss on good answers' words"] is False
    stuck = {c.name: c.ok for c in criterion.judge({**healthy, "rejected_logratio": -20.0})}
    assert stuck["rejected answers' log-ratio"] is False
