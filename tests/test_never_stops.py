"""never_stops: padding labels, the chat template and the stopping criterion, as code."""
import dataclasses

import torch

from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.data import BOS, EOS, SEP, SftStream, baselines
from debugsim.sim.implementations import chosen, source

SFT = {"data": "sft", "seq_len": 12, "sft_lengths": "four_word_answers", "vocab_size": 14}


def _config(**settings):
    return with_overrides(TrainConfig(), {**SFT, **settings})


def _eos_labels(**settings) -> int:
    return int((SftStream(_config(**settings)).batch(0, 0).targets == EOS).sum())


def test_eos_loses_its_label_only_when_both_changes_meet():
    healthy = _eos_labels()
    assert healthy > 0
    assert _eos_labels(pad_token="eos") == healthy                      # a setting, harmless alone
    assert _eos_labels(padding_labels="by_pad_id") == healthy           # the code, harmless alone
    assert _eos_labels(pad_token="eos", padding_labels="by_pad_id") == 0


def test_padding_by_eos_is_still_padding_to_attention():
    batch, plain = SftStream(_config(pad_token="eos")).batch(0, 0), SftStream(_config()).batch(0, 0)
    assert torch.equal(batch.key_padding, plain.key_padding)
    assert torch.equal(batch.targets, plain.targets)                    # labels by position


def test_fixed_reply_length_lowers_the_floor():
    assert baselines(_config()).floor < baselines(_config(sft_lengths="short_answers")).floor


def test_chat_template_with_and_without_the_reply_marker():
    words = [5, 6, 7, 8]
    assert chosen(_config(), "chat_template")(words) == [BOS, *words, SEP]
    assert chosen(_config(chat_template="no_reply_marker"), "chat_template")(words) == [BOS, *words]


def test_the_stopping_criterion_ends_an_answer_at_its_token():
    answer = [5, 6, EOS, 7, SEP, 8]
    assert chosen(_config(), "stop_check")(answer) == 2
    assert chosen(_config(stop_check="sep"), "stop_check")(answer) == 4
    assert chosen(_config(), "stop_check")([5, 6]) is None


def test_the_code_probe_shows_each_bug_and_nothing_marks_it():
    healthy = _config()
    for slot, broken in (("padding_labels", "by_pad_id"), ("chat_template", "no_reply_marker"),
                         ("stop_check", "sep")):
        shown, usual = source(dataclasses.replace(healthy, **{slot: broken}), slot), \
            source(healthy, slot)
        assert shown != usual and "bug" not in shown.lower() and broken not in shown
