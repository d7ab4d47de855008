"""reward_model_backwards: preference pairs, the collator's pair layout, where the reward is read."""
import dataclasses
import math

import pytest
import torch

from debugsim.sim import app
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.implementations import chosen, source
from debugsim.sim.models import RewardModel
from debugsim.sim.preferences import PreferenceStream, accuracy, answer_words

BASE = app.scenario("reward_model_backwards").base


def _config(**settings):
    return with_overrides(TrainConfig(), {**BASE, "base_model": "scratch", **settings})


def _looping(tokens) -> torch.Tensor:
    """Rows whose answer repeats one word (the weak model's answers)."""
    words = [[t for t in row if t >= 4][3:] for row in tokens.tolist()]
    return torch.tensor([len(set(w)) == 1 for w in words])


def test_the_collator_labels_the_good_answers_chosen_unless_it_swaps_them():
    healthy = PreferenceStream(_config()).batch(0, 0)
    assert healthy.size == 2 * BASE["batch_size"]
    assert not _looping(healthy.tokens[healthy.targets == 1]).any()
    assert _looping(healthy.tokens[healthy.targets == 0]).all()
    swapped = PreferenceStream(_config(pair_order="rejected_first")).batch(0, 0)
    assert torch.equal(swapped.targets, healthy.targets)                  # same labels ...
    assert _looping(swapped.tokens[swapped.targets == 1]).all()          # ... on the loops


def test_held_out_pairs_are_the_usual_pipeline_whatever_the_team_changed():
    usual = PreferenceStream(_config()).eval_batch()
    for changed in ({"pair_order": "rejected_first"}, {"pref_lengths": "chosen_longer"}):
        held = PreferenceStream(_config(**changed)).eval_batch()
        assert torch.equal(held.tokens, usual.tokens) and torch.equal(held.targets, usual.targets)


def test_labels_follow_length_only_without_length_control():
    def chosen_longer(**settings) -> float:
        batch = PreferenceStream(_config(**settings))._collated
        words = answer_words(batch.tokens)
        assert (words[batch.targets == 1] != words[batch.targets == 0]).all()   # never equal
        return float((words[batch.targets == 1] > words[batch.targets == 0]).float().mean())
    assert 0.4 < chosen_longer() < 0.6
    assert chosen_longer(pref_lengths="chosen_longer") == 1.0
    assert "pref_lengths" not in _config(pref_lengths="chosen_longer").recipe_dict()


def test_every_row_is_padded_so_the_last_column_is_always_padding():
    batch = PreferenceStream(_config()).batch(0, 0)
    assert batch.key_padding[:, -1].all() and not batch.key_padding[:, 0].any()
    model = RewardModel(_config())
    values = model(batch.tokens, batch.key_padding)
    assert values.shape == batch.tokens.shape
    assert (values[batch.key_padding] == 0).all() and (values[~batch.key_padding] != 0).all()
    last = (~batch.key_padding).sum(1) - 1
    read = chosen(_config(), "reward_position")(values, batch.key_padding)
    assert torch.equal(read, values[torch.arange(batch.size), last])
    assert (chosen(_config(reward_position="last_column"), "reward_position")(
        values, batch.key_padding) == 0).all()


def test_a_reward_read_at_padding_pins_the_loss_at_log_2_and_moves_nothing():
    result = app.execute(app.prepare("reward_model_backwards", 0, "reward_at_padding",
                                     settings={"steps": 3}))
    assert all(r["loss"] == pytest.approx(math.log(2), abs=1e-6) for r in result.records)
    assert all(r["grad_norm"] == 0 and r["accuracy"] == 0.5 for r in result.records)
    assert result.summary["tied_share"] == 1.0 and result.summary["pref_accuracy"] == 0.5


def test_accuracy_counts_a_tie_as_half():
    assert accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])) == 0.5


def test_the_code_probe_shows_each_bug_and_nothing_marks_it():
    healthy = _config()
    for slot, broken in (("pair_order", "rejected_first"), ("reward_position", "last_column")):
        shown, usual = source(dataclasses.replace(healthy, **{slot: broken}), slot), \
            source(healthy, slot)
        assert shown != usual and "bug" not in shown.lower() and broken not in shown


def test_language_model_records_carry_no_preference_signals():
    result = app.execute(app.prepare("bad_lr", 0, settings={"steps": 2}))
    assert not {"accuracy", "margin", "eval_accuracy"} & set(result.records[-1])


def test_the_criterion_judges_held_out_preference_accuracy():
    criterion = app.scenario("reward_model_backwards").criterion
    checks = {c.name: c.ok for c in criterion.judge({"pref_accuracy": 0.5})}
    assert checks["held-out preference accuracy"] is False
    assert all(c.ok for c in criterion.judge({"pref_accuracy": 0.9}))
    assert "held-out preference accuracy >= 0.7" in criterion.describe()
