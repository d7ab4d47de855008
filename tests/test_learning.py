"""The two reference losses of the toy data (entropy floor, unigram baseline) and the learning
bars the training scenarios hold their healthy runs to."""
import math
from collections import Counter

import pytest
import torch

from debugsim.sim import app, registry
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.data import (EOS, FIRST_WORD, IGNORE, RESPONSE_LENGTHS, Baselines,
                               baselines, batch_baselines, grammar, make_stream, prompt_lengths,
                               true_next_token_probs)
from debugsim.sim.loop import token_loss
from debugsim.sim.scenario import Criterion

LONG = {"data": "sft", "sft_lengths": "long_answers"}
DATA = [{}, {"vocab_size": 14}, {"data": "sft"}, {"data": "sft", "seq_len": 16},
        {"data": "sft", "padding_side": "left"}, {"data": "sft", "vocab_size": 10},
        LONG, {**LONG, "seq_len": 16}]


def config(**overrides):
    return with_overrides(TrainConfig(), overrides)


def big_eval_batch(overrides, size=512, seed=3):
    cfg = config(**overrides, eval_batch_size=size, seed=seed)
    return cfg, make_stream(cfg).eval_batch()


def test_markov_floor_in_closed_form():
    # position 0's target (the second word) is uniform, every later one has the branch entropy
    cfg = config()
    g = grammar(cfg.vocab_size)
    branch = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
    expected = (math.log(g.n_words) + (cfg.seq_len - 1) * branch) / cfg.seq_len
    assert baselines(cfg).floor == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("overrides", DATA, ids=str)
def test_reference_losses_match_held_out_data(overrides):
    """An oracle that predicts the true conditional distribution gets the floor: exactly in
    expectation (its entropy), and up to sampling noise as a measured loss on held-out data. The
    unigram baseline is the cross-entropy of the held-out targets' own frequencies."""
    cfg, batch = big_eval_batch(overrides)
    ref = baselines(cfg)
    probs = true_next_token_probs(batch, cfg)
    supervised = batch.targets != IGNORE
    rows = probs[supervised]
    assert torch.allclose(rows.sum(-1), torch.ones(len(rows), dtype=rows.dtype))
    # every supervised target is possible under the oracle
    picked = probs.gather(-1, batch.targets.clamp(min=0)[..., None])[..., 0][supervised]
    assert bool((picked > 0).all())
    logits = probs.clamp(min=1e-30).log().float()     # the oracle as a model's logits
    loss_sum, count = token_loss(logits, batch.targets)
    oracle_loss = float(loss_sum / count)
    # per-token NLL has a std of about 0.6 nats; 512 sequences give >= 2,000 targets
    assert oracle_loss == pytest.approx(ref.floor, abs=4 * 0.6 / math.sqrt(int(count)))
    measured = batch_baselines(batch, cfg)
    assert measured.floor == pytest.approx(ref.floor, abs=0.03)
    assert measured.unigram == pytest.approx(ref.unigram, abs=0.02)
    n_symbols = grammar(cfg.vocab_size).n_words + (cfg.data == "sft")   # + EOS
    assert ref.floor < ref.unigram <= math.log(n_symbols) + 1e-9


def test_the_markov_eval_batch_of_every_run_sits_on_the_floor():
    # on plain LM data the floor does not depend on which sentences were drawn
    for seed in range(3):
        cfg = config(seed=seed)
        batch = make_stream(cfg).eval_batch()
        assert batch_baselines(batch, cfg).floor == pytest.approx(baselines(cfg).floor, abs=1e-6)


@pytest.mark.parametrize("mix", ["short_answers", "long_answers"])
def test_sft_oracle_knows_where_responses_may_end(mix):
    cfg, batch = big_eval_batch({"data": "sft", "sft_lengths": mix}, size=64)
    probs = true_next_token_probs(batch, cfg)
    low, high = RESPONSE_LENGTHS[mix]
    for i in range(batch.size):
        row = batch.tokens[i].tolist()
        if 3 not in row:                       # SEP cut off: nothing supervised
            continue
        sep = row.index(3)
        for j in range(sep, len(row)):
            if batch.targets[i, j] == IGNORE:
                continue
            eos = float(probs[i, j, EOS])
            k = j - sep                        # response words already written
            assert eos == pytest.approx(0.0 if k < low else 1.0 / (high + 1 - k))
            assert float(probs[i, j, :FIRST_WORD].sum()) == pytest.approx(eos)


def test_sft_pools_follow_the_prompt_length_distribution():
    """The exact baselines enumerate `prompt_lengths`; the sampled pools must follow it."""
    for seq_len, mix in ((16, "long_answers"), (24, "long_answers"), (24, "short_answers")):
        probs = prompt_lengths(seq_len, mix)
        assert sum(probs.values()) == pytest.approx(1.0)
        stream = make_stream(config(data="sft", sft_lengths=mix, seq_len=seq_len, seed=seq_len))
        counts = Counter(stream.pool_lengths)
        assert set(counts) <= set(probs)
        n = len(stream.pool_lengths)
        for length, p in probs.items():
            assert abs(counts[length] / n - p) <= 4 * math.sqrt(p * (1 - p) / n), length


@pytest.mark.parametrize("scenario_id", ["nan_loss", "oom"])
def test_sft_rows_are_about_half_supervised_and_grouping_makes_empty_batches(scenario_id):
    """Dense enough supervision to learn from, and the tail that empty_label_division needs: with
    length grouping, whole batches of prompts that truncation left no response."""
    for seed in range(3):
        base = app.prepare(registry.get(scenario_id), seed).config
        stream = make_stream(base)
        supervised = torch.cat([(stream.batch(step, 0).targets != IGNORE).float().mean(1)
                                for step in range(8)])
        assert 0.4 < float(supervised.mean()) < 0.7
        grouped = make_stream(with_overrides(base, {"length_grouped": True}))
        batches = [grouped.batch(*divmod(i, base.grad_accum_steps))
                   for i in range(grouped.POOL // base.batch_size)]         # one epoch
        empty = [i for i, batch in enumerate(batches) if not bool((batch.targets != IGNORE).any())]
        assert len(empty) >= 2, (seed, empty)


def test_baselines_bar_and_learnt():
    ref = Baselines(floor=1.0, unigram=3.0)
    assert ref.bar() == 2.0 and ref.bar(0.25) == 1.5
    assert ref.learnt(3.0) == 0 and ref.learnt(1.0) == 1 and ref.learnt(2.0) == 0.5


def test_criterion_bar_relative_to_the_baselines():
    criterion = Criterion(min_learnt=0.6, baselines=(1.0, 3.0))
    assert criterion.eval_bar == pytest.approx(1.8)
    ok, = [c for c in criterion.judge({"eval_loss": 1.7}) if c.name == "held-out loss"]
    bad, = [c for c in criterion.judge({"eval_loss": 1.9}) if c.name == "held-out loss"]
    assert ok.ok and not bad.ok
    assert "60% of the way from the unigram baseline 3.000 to the entropy floor 1.000" in ok.detail
    assert "held-out loss <= 1.8 (60%" in criterion.describe()
    # with both, the stricter bar holds
    assert Criterion(max_eval_loss=1.5, min_learnt=0.6, baselines=(1.0, 3.0)).eval_bar == 1.5
    with pytest.raises(ValueError):
        Criterion(min_learnt=0.5)
    with pytest.raises(ValueError):
        Criterion(min_learnt=0.5, baselines=(3.0, 1.0))



def test_a_held_out_loss_below_the_floor_fails():
    """No model beats the entropy floor on unseen data: below it, the measurement is broken."""
    criterion = Criterion(min_learnt=0.5, baselines=(1.0, 3.0), min_eval_loss=0.95)
    checks = {c.name: c.ok for c in criterion.judge({"eval_loss": 0.8})}
    assert checks == {"fits in memory": True, "finite": True, "held-out loss": True,
                      "held-out loss not below the entropy floor": False}
    assert all(c.ok for c in criterion.judge({"eval_loss": 1.5}))
    assert "held-out loss >= 0.95" in criterion.describe()


def test_loss_plots_draw_the_scenarios_entropy_floor():
    from types import SimpleNamespace
    from debugsim.sim.plots import entropy_floor
    scenario = registry.get("too_good_to_be_true")
    assert entropy_floor(SimpleNamespace(prepared=SimpleNamespace(scenario=scenario))) == \
        pytest.approx(baselines(app.prepare(scenario, 0).config).floor, abs=1e-4)
    assert entropy_floor(SimpleNamespace(prepared=SimpleNamespace(
        scenario=registry.get("oom_13b")))) is None

# language models: a reward model's loss has no entropy floor (it demands held-out accuracy),
# nor has a policy gradient's surrogate loss (RLHF demands gold reward within a KL budget)
TRAINING = [s for s in registry.all_scenarios()
            if s.engine == "training" and s.base.get("data") not in ("preferences", "rollouts")]
# sft_label_mask's window MLP cannot count the words it has written, so it cannot learn when an
# answer ends as well as the floor assumes (the true generator knows the response length): its
# healthy runs end 0.39-0.64 of the way in 90 steps, and a transformer that could count does
# not fit the suite's time budget. It demands 30%, which lr / 10 (0.11-0.20) never reaches.
# lora_wont_learn fine-tunes the same window MLP on the same SFT data (with rank-4 adapters, 80
# steps): healthy 0.40-0.47 of the way on bare seeds 0-6, lr x 10 on a healthy run 0.06-0.24.
# never_stops (a pretrained transformer, then 150 SFT steps) reaches 0.38-0.62 of the way on 40
# keyed training seeds: it demands a quarter of the way, and judges stopping.
LOWER_BAR = {"sft_label_mask": 0.3, "lora_wont_learn": 0.3, "never_stops": 0.25}


@pytest.mark.parametrize("scenario", TRAINING, ids=lambda s: s.id)
def test_training_scenarios_demand_at_least_halfway_to_the_floor(scenario):
    criterion = scenario.criterion
    ref = baselines(app.prepare(scenario, 0).config)
    assert criterion.eval_bar is not None, "no held-out bar"
    assert criterion.eval_bar <= ref.bar(1 - LOWER_BAR.get(scenario.id, 0.5)) + 1e-9
    if criterion.baselines is not None:        # the copy in the scenario file is exact
        assert criterion.baselines == pytest.approx((ref.floor, ref.unigram), abs=1e-4)
