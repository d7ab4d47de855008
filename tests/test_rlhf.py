"""rlhf_reward_hacking: the gold reward, the proxy's flaw, the reference, where beta is read."""
import dataclasses

import pytest
import torch

from debugsim.sim import app
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.data import grammar
from debugsim.sim.implementations import chosen, source
from debugsim.sim.loop import train
from debugsim.sim.models import RLHFModel
from debugsim.sim.rlhf import (ANSWER_TOKENS, PROMPT_WORDS, favourite_word, gold_quality,
                               reward_model, reward_model_accuracy, rm_scores)

BASE = app.scenario("rlhf_reward_hacking").base


def _config(**settings):
    return with_overrides(TrainConfig(), {**BASE, "base_model": "scratch", **settings})


def test_gold_reward_is_the_grammar():
    config = _config()
    rows = grammar(config.vocab_size).sample(64, PROMPT_WORDS + ANSWER_TOKENS,
                                             torch.Generator().manual_seed(3))
    assert torch.equal(gold_quality(rows, config.vocab_size), torch.ones(64))
    spam = rows.clone()
    spam[:, PROMPT_WORDS:] = favourite_word(config.vocab_size)
    assert float(gold_quality(spam, config.vocab_size).max()) <= 2 / ANSWER_TOKENS


def test_the_reward_model_ranks_quality_and_overrates_the_favourite_word():
    """The proxy is real and flawed: it ranks most held-out quality pairs right, and scores an
    answer that repeats the raters' favourite word (never grammatical) far above grammatical
    answers."""
    config = _config()
    model = reward_model(config, train)
    assert reward_model_accuracy(model, config.vocab_size) >= 0.75
    rows = grammar(config.vocab_size).sample(64, PROMPT_WORDS + ANSWER_TOKENS,
                                             torch.Generator().manual_seed(4))
    spam = rows.clone()
    spam[:, PROMPT_WORDS:] = favourite_word(config.vocab_size)
    with torch.no_grad():
        assert float(rm_scores(model, spam).mean()) > float(rm_scores(model, rows).mean()) + 3


def test_a_reference_loaded_with_assign_moves_with_the_policy():
    for way, moves in (("loaded_copy", False), ("assigned_weights", True)):
        torch.manual_seed(0)
        model = RLHFModel(_config(rlhf_reference=way))
        before = [p.detach().clone() for p in model.reference.parameters()]
        optimizer = torch.optim.SGD(model.policy.parameters(), lr=1e-2)
        model.policy(torch.tensor([[4, 5, 6, 7]])).sum().backward()
        optimizer.step()
        moved = any(not torch.equal(a, p) for a, p in zip(before, model.reference.parameters()))
        assert moved is moves, way
        assert not any(p.requires_grad for p in model.reference.parameters())


def test_beta_is_read_from_the_config_or_silently_0():
    scores, kl = torch.tensor([1.0, 2.0]), torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    healthy = chosen(_config(), "rlhf_penalty")(scores, kl, _config())
    assert torch.allclose(healthy, scores - BASE["rlhf_beta"] * kl.sum(1))
    broken = _config(rlhf_penalty="beta_from_kl_coef")
    assert torch.equal(chosen(broken, "rlhf_penalty")(scores, kl, broken), scores)


def test_logged_kl_and_penalty_follow_the_code():
    """Three real steps: the healthy KL is exactly 0 only at the first step and its penalty is
    beta times it; a shared reference logs 0 throughout; beta read as 0 logs no penalty."""
    healthy = app.execute(app.prepare("rlhf_reward_hacking", 0, settings={"steps": 3}))
    assert healthy.records[0]["kl"] == 0 and healthy.records[-1]["kl"] != 0
    last = healthy.records[-1]
    assert last["kl_penalty"] == pytest.approx(BASE["rlhf_beta"] * last["kl"], rel=1e-4)
    shared = app.execute(app.prepare("rlhf_reward_hacking", 0, "reference_not_frozen",
                                     settings={"steps": 3}))
    assert all(r["kl"] == 0 and r["kl_penalty"] == 0 for r in shared.records)
    assert shared.summary["kl_pretrained"] > 0                # it moved all the same
    unread = app.execute(app.prepare("rlhf_reward_hacking", 0, "kl_penalty_off",
                                     settings={"steps": 3}))
    assert unread.records[-1]["kl"] != 0
    assert all(r["kl_penalty"] == 0 for r in unread.records)


def test_the_dashboard_shows_proxy_reward_kl_gold_and_lr():
    """The policy-gradient loss is a surrogate: an RLHF run's overview draws what tells runs
    apart instead (the loss stays one `plot loss` away)."""
    from debugsim.sim import plots
    run = app.execute(app.prepare("rlhf_reward_hacking", 0, settings={"steps": 3}))
    titles = [ax.get_title() for ax in plots.dashboard(run).axes]
    assert titles == [plots.vocab.get(name).title
                      for name in ("reward", "kl", "gold_reward", "lr")]
    other = app.execute(app.prepare("bad_lr", 0, settings={"steps": 3}))
    assert "reward" not in " ".join(ax.get_title() for ax in plots.dashboard(other).axes)


def test_the_code_probe_shows_each_bug_and_nothing_marks_it():
    healthy = _config()
    for slot, broken in (("rlhf_penalty", "beta_from_kl_coef"),
                         ("rlhf_reference", "assigned_weights")):
        shown = source(dataclasses.replace(healthy, **{slot: broken}), slot)
        assert shown != source(healthy, slot)
        assert "bug" not in shown.lower() and broken not in shown


def test_the_criterion_judges_gold_and_drift():
    criterion = app.scenario("rlhf_reward_hacking").criterion
    healthy = {"gold_reward": 0.55, "kl_pretrained": 1.5}
    assert all(c.ok for c in criterion.judge(healthy))
    hacked = {c.name: c.ok for c in criterion.judge({**healthy, "gold_reward": 0.2})}
    assert hacked["gold reward"] is False
    drifted = {c.name: c.ok for c in criterion.judge({**healthy, "kl_pretrained": 7.0})}
    assert drifted["KL to the pretrained model"] is False
    assert "rlhf_beta" in _config().recipe_dict() and "rlhf_beta" not in \
        TrainConfig().recipe_dict()


def test_the_doctor_reads_no_alarm_into_a_policy_gradient_loss(tmp_path):
    """The REINFORCE loss goes below 0 and swings with each batch's advantages: its shape is no
    evidence of an lr too high or of leakage."""
    from debugsim.sim import doctor
    run = app.execute(app.prepare("rlhf_reward_hacking", 1), tmp_path)
    assert min(r["loss"] for r in run.records) < 0
    assert doctor.diagnose(tmp_path / "metrics.jsonl").findings == []
