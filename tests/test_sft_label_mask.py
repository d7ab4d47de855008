"""sft_label_mask: the data pipeline's code, seen through the `mask` probe (short runs)."""
from functools import lru_cache

import pytest

from debugsim.sim import app
from debugsim.sim.data import EOS, SEP
from debugsim.sim.probes import find
from debugsim.sim.probes.mask import mask_row

SHORT = {"steps": 3}


def _row(cause):
    """The first row of the last step's batch whose example is whole (its EOS survived
    truncation): the same row for every cause (the data and its order do not change)."""
    result = app.simulate("sft_label_mask", 0, cause, settings=SHORT)
    return result, mask_row(result, _whole_row())["positions"]


@lru_cache(maxsize=1)
def _whole_row() -> int:
    healthy = app.simulate("sft_label_mask", 0, None, settings=SHORT)
    return next(r for r in range(healthy.config.batch_size)
                if any(p["input"] == EOS for p in mask_row(healthy, r)["positions"]))


def _before_sep(positions):
    sep = next(p["position"] for p in positions if p["input"] == SEP)
    return [p for p in positions if p["position"] < sep]


def test_a_healthy_row_labels_the_response_and_its_eos_only():
    _, positions = _row(None)
    labelled = [p for p in positions if p["label"] is not None]
    assert labelled and labelled[-1]["label"] == EOS
    assert all(p["label"] is None for p in _before_sep(positions)[:-1])
    assert all(p["loss"] > 0 for p in labelled)
    # each label is the next position's input (targets are shifted by one)
    for here, after in zip(positions, positions[1:]):
        if here["label"] is not None:
            assert here["label"] == after["input"] or here["label"] == EOS


@pytest.mark.parametrize("cause, check", [
    ("eos_missing", lambda ps: not any(EOS in (p["input"], p["label"]) for p in ps)),
    ("eos_unlabelled", lambda ps: any(p["input"] == EOS for p in ps)
     and not any(p["label"] == EOS for p in ps)),
    ("prompt_in_loss", lambda ps: any(p["label"] is not None for p in _before_sep(ps))),
    ("labels_not_shifted", lambda ps: all(p["label"] == p["input"] for p in ps
                                          if p["label"] is not None)),
])
def test_each_cause_shows_in_one_row(cause, check):
    _, positions = _row(cause)
    assert check(positions)
    _, healthy = _row(None)
    assert not check(healthy)


def test_the_mask_probe_renders_and_refuses_a_bad_row(tmp_path):
    result, _ = _row("eos_unlabelled")
    probe = find("mask", result.prepared.scenario)
    row = next(r for r in range(8) if "<eos>" in probe.run(result, [str(r)], tmp_path))
    text = probe.run(result, [str(row)], tmp_path)
    assert "<eos>" in text and "in loss" in text and "positions carry a label" in text
    for bad in (["99"], ["x"], []):
        with pytest.raises(ValueError):
            probe.run(result, bad, tmp_path)


def test_answers_are_measured_against_eos():
    result = app.simulate("sft_label_mask", 0, None, settings=SHORT)
    assert {"stop_rate", "answer_words", "valid_rate"} <= set(result.summary)
    assert all(len(a) <= result.config.gen_tokens for a in result.samples)
