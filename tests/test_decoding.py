"""Decoding (sim/decoding.py) and the text metrics (sim/repetition.py)."""
import dataclasses

import pytest
import torch

from debugsim.sim import repetition as R
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.decoding import (apply_repetition_penalty, ban_repeated_ngrams, choose, generate,
                          nucleus, sample_and_measure)
from debugsim.sim.probes.samples import render_samples
from debugsim.sim.loop import train

A, B, C, D = 4, 5, 6, 7


# --- metrics on hand-made sequences ---------------------------------------------------------

def test_distinct_n():
    assert R.distinct_n([A, B, C, D], 1) == 1.0
    assert R.distinct_n([A, A, A, A], 1) == 0.25
    assert R.distinct_n([A, B, A, B], 2) == 2 / 3          # AB, BA, AB
    assert R.distinct_n([A], 2) == 1.0                      # too short to hold a 2-gram


def test_repeat_rate():
    assert R.repeat_rate([A, B, C, D, A, B]) == 0.0         # no 3-gram comes back
    assert R.repeat_rate([A, B, C, A, B, C]) == 1 / 4       # ABC BCA CAB ABC
    assert R.repeat_rate([A] * 6) == 3 / 4                  # AAA x4, three of them repeats
    assert R.repeat_rate([A, B]) == 0.0


@pytest.mark.parametrize("sample, expected", [
    ([A, B, C, A, B, C, A, B, C], 9),
    ([A, A, A, A], 4),
    ([A, B, A, B], 4),
    ([A, B, A], 0),                       # not two whole copies of AB
    ([A, B, C, D], 0),
    ([D, A, B, A, B, A, B, C], 6),        # the loop inside, not the whole sample
    ([A, B, C, A, B, C, D, D], 6),        # period 3 beats the DD pair
    ([], 0),
])
def test_longest_loop(sample, expected):
    assert R.longest_loop(sample) == expected


def test_valid_rate_skips_the_prompt():
    allowed = {(A, B, C), (B, C, D)}
    valid = lambda a, b, c: (a, b, c) in allowed
    assert R.valid_rate([A, B, C, D], valid) == 1.0
    assert R.valid_rate([A, B, C, A], valid) == 0.5
    assert R.valid_rate([A, B, C, A], valid, start=3) == 0.0     # only (B, C, A) is generated


def test_summarize_averages_over_samples():
    m = R.summarize([[A, B, C, A, B, C], [A, B, C, D, A, B]])
    assert m["repeat_rate"] == pytest.approx((1 / 4 + 0) / 2)
    assert m["longest_loop"] == pytest.approx((6 + 0) / 2)
    assert m["worst_loop"] == 6


# --- the logits processors --------------------------------------------------------------------

def test_repetition_penalty_lowers_seen_tokens_whatever_their_sign():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert logits.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_no_repeat_ngram_bans_the_completing_token():
    logits = torch.zeros(1, 8)
    ban_repeated_ngrams(logits, torch.tensor([[A, B, C, A, B]]), 3)   # "A B" was followed by C
    assert torch.isinf(logits[0, C]) and torch.isfinite(logits[0, [A, B, D]]).all()


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert (nucleus(probs, 0.7) > 0).tolist() == [[True, True, False, False]]
    assert (nucleus(probs, 0.1) > 0).tolist() == [[True, False, False, False]]   # top always


def test_top_k_and_greedy():
    config = with_overrides(TrainConfig(), {"decode": "sample", "top_k": 1})
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    gen = torch.Generator().manual_seed(0)
    assert choose(logits, torch.zeros(2, 1, dtype=torch.long), config, gen).tolist() == [1, 0]
    greedy = dataclasses.replace(config, decode="greedy")
    assert choose(logits, torch.zeros(2, 1, dtype=torch.long), greedy, gen).tolist() == [1, 0]


# --- generation on a (briefly) trained model --------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    config = with_overrides(TrainConfig(), {
        "vocab_size": 14, "d_model": 32, "n_layer": 1, "batch_size": 32, "steps": 40,
        "gen_tokens": 20})
    return train(config)


def _decode(run, callbacks=(), **settings):
    config = dataclasses.replace(run.config, **settings)
    return generate(run.model, run.stream.prompts(16, 4), config, callbacks)


def test_cache_and_no_cache_agree_greedy(trained):
    cached, uncached = _decode(trained, kv_cache=True), _decode(trained, kv_cache=False)
    assert cached.shape == (16, 4 + 20)
    assert torch.equal(cached, uncached)


def test_cache_and_no_cache_agree_when_sampling(trained):
    settings = dict(decode="sample", temperature=0.8, top_p=0.9, repetition_penalty=1.2)
    assert torch.equal(_decode(trained, kv_cache=True, **settings),
                       _decode(trained, kv_cache=False, **settings))


def test_sampling_is_deterministic_per_seed(trained):
    first, again = _decode(trained, decode="sample"), _decode(trained, decode="sample")
    other = _decode(trained, decode="sample", seed=trained.config.seed + 1)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_prompt_is_kept_and_model_mode_restored(trained):
    prompts = trained.stream.prompts(16, 4)
    trained.model.train()
    out = _decode(trained)
    assert torch.equal(out[:, :4], prompts)
    assert trained.model.training


def test_a_cache_that_stores_only_the_prompt_changes_the_output(trained):
    broken = _decode(trained, kv_cache_update="store_on_prefill")
    assert not torch.equal(broken, _decode(trained))
    assert torch.equal(_decode(trained, kv_cache_update="store_on_prefill", kv_cache=False),
                       _decode(trained))         # without a cache there is nothing to go stale


def test_the_token_choice_variant_never_samples(trained):
    """The variant compares the decode setting with a name the config never uses, so it takes
    the argmax whatever the sampling settings say; the usual one samples."""
    sampled = dict(decode="sample", temperature=0.8)
    greedy = _decode(trained, decode="greedy")
    assert not torch.equal(_decode(trained, **sampled), greedy)
    assert torch.equal(_decode(trained, token_choice="by_decode_name", **sampled), greedy)
    assert torch.equal(_decode(trained, token_choice="by_decode_name", decode="sample",
                               temperature=1.5, top_p=0.5), greedy)


def test_sample_and_measure(trained):
    samples, metrics = sample_and_measure(trained, ())
    assert len(samples) == 16 and all(len(s) == 20 for s in samples)
    assert {"distinct_1", "distinct_2", "repeat_rate", "longest_loop", "valid_rate"} <= set(metrics)
    assert 0.0 <= metrics["valid_rate"] <= 1.0


def test_samples_probe_redecodes_with_decoding_settings_only():
    from debugsim.scenarios.repetitive_decoding import SCENARIO
    from debugsim.sim import app
    result = app.simulate(SCENARIO, 0, "stale_kv_cache", settings={"steps": 30})   # short: cheap
    text = render_samples(result, {"kv_cache": False})
    assert "kv_cache=false" in text and text.count(" | ") == 6
    assert "*" not in text                       # the text as generated, nothing marked
    for metric in ("repeated 3-grams", "longest loop", "distinct-2", "grammatical transitions"):
        assert metric in text.splitlines()[-1]
    with pytest.raises(ValueError, match="decoding settings only"):
        render_samples(result, {"steps": 150})


def test_runs_that_differ_only_in_decoding_share_one_training(monkeypatch):
    """A decoding fix re-decodes the trained model instead of training again, and gives what a
    fresh run gives: records, summary and samples (the KV-cache fault, a decoding-only
    callback, stays fresh per run; the early export, a training one, comes with its training)."""
    import json
    from debugsim.sim import app, loop, runs
    trainings = []
    real_train = loop.train
    monkeypatch.setattr(loop, "train", lambda *a, **k: trainings.append(1) or real_train(*a, **k))

    def snapshot(result):
        return json.dumps([result.records, result.summary, result.samples], sort_keys=True)

    short = {"steps": 24}
    for cause, fixes, expected_trainings in (
            ("stale_kv_cache", ("higher_temperature", "store_kv", "no_kv_cache"), 1),
            ("undertrained", ("higher_temperature", "recipe_step_budget"), 2)):   # a longer training anew
        runs.clear_cache()
        trainings.clear()
        broken = app.prepare("repetitive_decoding", 4, cause, settings=short)
        runs_of = [broken, *(broken.with_fixes((fix,), short) for fix in fixes)]
        served = [snapshot(app.execute(prepared)) for prepared in runs_of]
        assert len(trainings) == expected_trainings, cause
        fresh = []
        for prepared in runs_of:
            runs.clear_cache()
            fresh.append(snapshot(app.execute(prepared)))
        assert served == fresh, cause
    runs.clear_cache()
