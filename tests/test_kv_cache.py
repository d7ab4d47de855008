"""kv_cache_mismatch: the cache test itself (cached vs uncached logits, step by step)."""
import pytest
import torch

from debugsim.sim import app
from debugsim.sim.probes import find
from debugsim.sim.probes.kvdiff import TOLERANCE, cache_divergence, first_divergent_steps

SEED = 1


@pytest.fixture(scope="module")
def healthy():
    return app.simulate("kv_cache_mismatch", SEED)          # the one training the others share


def test_healthy_cached_and_uncached_logits_agree_on_every_step(healthy):
    found = cache_divergence(healthy)
    assert len(found) == 4 and all(r["rows"] == 4 for r in found)
    for request in found:
        assert request["first"] is None
        assert all(d is not None and d <= TOLERANCE for d in request["diffs"])
        assert request["cache_keys"] == [4 + step for step in range(20)]   # one key per token
    cached, plain = healthy.detail["step_logits"], app.simulate(
        "kv_cache_mismatch", SEED, settings={"kv_cache": False}).detail["step_logits"]
    assert torch.allclose(cached, plain, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("cause, first, keys_after_two", [
    ("positions_not_advanced", (1, 1, 1, 1), 6),     # the first token fed alone
    ("kv_appended_twice", (2, 2, 2, 2), 8),          # two keys per token fed alone
    ("cache_not_reset", (None, 0, 0, 0), 29),        # on top of request 1's 23 keys
])
def test_each_cause_diverges_at_the_step_its_tell_names(healthy, cause, first, keys_after_two):
    broken = app.simulate("kv_cache_mismatch", SEED, cause)
    assert first_divergent_steps(broken) == first
    assert broken.prepared.scenario.cause(cause).signal.holds(broken)
    assert cache_divergence(broken)[1]["cache_keys"][2] == keys_after_two


def test_kvdiff_probe_shows_numbers_not_a_verdict(healthy, tmp_path):
    broken = app.simulate("kv_cache_mismatch", SEED, "kv_appended_twice")
    text = find("kvdiff", broken.prepared.scenario).run(broken, [], tmp_path)
    last = text.splitlines()[-1]
    assert last.endswith("req1 2, req2 2, req3 2, req4 2")
    assert "twice" not in text and "bug" not in text
    assert len(text.splitlines()) == 3 + 20 + 1
