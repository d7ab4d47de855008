"""kv_cache_mismatch: the cache test itself (cached vs uncached logits, step by step)."""
import pytest
import torch

from debugsim.sim import app
from debugsim.sim.config import TrainConfig
from debugsim.sim.decoding import generate, prompt_batch
from debugsim.sim.models import TinyTransformer
from debugsim.sim.probes import find
from debugsim.sim.probes.kvdiff import (TOLERANCE, cache_divergence, divergent_prompts,
                                        first_divergent_steps)

SEED = 1


@pytest.fixture(scope="module")
def healthy():
    return app.simulate("kv_cache_mismatch", SEED)          # the one training the others share


def test_healthy_cached_and_uncached_logits_agree_on_every_step_and_prompt(healthy):
    found = cache_divergence(healthy)
    assert len(found) == 4 and all(r["rows"] == 4 for r in found)
    for request in found:
        assert request["words"] == [4, 3, 4, 2]             # two prompts left-padded per request
        assert request["first"] is None and request["row_first"] == [None] * 4
        assert all(d is not None and d <= TOLERANCE for d in request["diffs"])
        assert request["cache_keys"] == [4 + step for step in range(20)]   # one key per token
    cached, plain = healthy.detail["step_logits"], app.simulate(
        "kv_cache_mismatch", SEED, settings={"kv_cache": False}).detail["step_logits"]
    assert torch.allclose(cached, plain, atol=TOLERANCE, rtol=0)
    assert healthy.summary["offline_match"] == 1.0


@pytest.mark.parametrize("cause, first, keys_after_two", [
    ("positions_not_advanced", (1, 1, 1, 1), 6),     # the first token fed alone
    ("kv_appended_twice", (2, 2, 2, 2), 8),          # two keys per token fed alone
    ("cache_not_reset", (None, 0, 0, 0), 29),        # on top of request 1's 23 keys
    ("padded_positions_from_cache", (1, 1, 1, 1), 6),   # the padded prompts only (below)
])
def test_each_cause_diverges_at_the_step_its_tell_names(healthy, cause, first, keys_after_two):
    broken = app.simulate("kv_cache_mismatch", SEED, cause)
    assert first_divergent_steps(broken) == first
    assert broken.prepared.scenario.cause(cause).signal.holds(broken)
    assert cache_divergence(broken)[1]["cache_keys"][2] == keys_after_two
    assert broken.summary["offline_match"] < 1.0


def test_only_the_padded_prompts_diverge_when_positions_ignore_the_padding(healthy):
    broken = app.simulate("kv_cache_mismatch", SEED, "padded_positions_from_cache")
    for request in divergent_prompts(broken):
        assert request == ((4, None), (3, 1), (4, None), (2, 1))
    advanced = app.simulate("kv_cache_mismatch", SEED, "positions_not_advanced")
    assert all(first == 1 for request in divergent_prompts(advanced) for _, first in request)


@pytest.mark.parametrize("row_positions, alike", [("whole_mask", True),
                                                  ("fed_tokens_mask", False)])
def test_a_left_padded_prompt_decodes_as_it_would_alone(row_positions, alike):
    """Batched with longer prompts (left-padded, masked), a prompt gets the logits it gets
    alone: with and without the cache. The team's other way of placing a padded row's new
    tokens fails this with the cache."""
    torch.manual_seed(0)
    model = TinyTransformer(14, 24, 32, 2, 4)      # two layers: padding could leak through one
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.4)  # far from uniform attention
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    tokens, padding = prompt_batch(prompts)
    for kv_cache in (True, False):
        config = TrainConfig(vocab_size=14, gen_tokens=6, kv_cache=kv_cache,
                             kv_row_positions=row_positions)
        batched: list = []
        generate(model, tokens, config, trace=batched, padding=padding)
        for row, prompt in enumerate(prompts):
            alone: list = []
            generate(model, torch.tensor([prompt]), config, trace=alone)
            same = torch.allclose(batched[0]["logits"][row], alone[0]["logits"][0], atol=1e-4)
            assert same == (alike or not kv_cache or len(prompt) == 4), (kv_cache, row)


def test_kvdiff_probe_shows_numbers_not_a_verdict(healthy, tmp_path):
    broken = app.simulate("kv_cache_mismatch", SEED, "kv_appended_twice")
    text = find("kvdiff", broken.prepared.scenario).run(broken, [], tmp_path)
    lines = text.splitlines()
    assert lines[23].endswith("req1 2, req2 2, req3 2, req4 2")
    assert lines[25] == "  req1: 4w: 2   3w: 2   4w: 2   2w: 2"       # prompt by prompt
    assert "twice" not in text and "bug" not in text
    assert len(lines) == 3 + 20 + 1 + 1 + 4
