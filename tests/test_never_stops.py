"""never_stops: the collator's labels, the chat template and the stopping criterion."""
import dataclasses

import torch

from debugsim.sim.chat import inference_prompts, reply
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.data import BOS, EOS, IGNORE, PAD, SEP, SftStream, baselines
from debugsim.sim.decoding import generate

SFT = {"data": "sft", "seq_len": 12, "response_words": 4, "vocab_size": 14}


def _eos_labels(**settings) -> int:
    config = with_overrides(TrainConfig(), {**SFT, **settings})
    batch = SftStream(config).batch(0, 0)
    return int((batch.targets == EOS).sum())


def test_eos_loses_its_label_only_when_both_changes_meet():
    healthy = _eos_labels()
    assert healthy > 0
    assert _eos_labels(pad_token="eos") == healthy                      # a setting, harmless alone
    assert _eos_labels(label_mask="response_not_pad") == healthy        # the code, harmless alone
    assert _eos_labels(pad_token="eos", label_mask="response_not_pad") == 0


def test_padding_by_eos_is_still_padding_to_attention():
    config = with_overrides(TrainConfig(), {**SFT, "pad_token": "eos"})
    batch = SftStream(config).batch(0, 0)
    plain = SftStream(with_overrides(TrainConfig(), SFT)).batch(0, 0)
    assert torch.equal(batch.key_padding, plain.key_padding)
    assert torch.equal(batch.targets, plain.targets)                    # labels by position


def test_fixed_reply_length_moves_the_floor_not_the_unigram_kind():
    varied = baselines(with_overrides(TrainConfig(), {**SFT, "response_words": 0}))
    fixed = baselines(with_overrides(TrainConfig(), SFT))
    assert fixed.floor < varied.floor            # where a 4-word reply ends is certain


def test_chat_template_with_and_without_the_reply_marker():
    config = with_overrides(TrainConfig(), SFT)
    marked = inference_prompts(config)
    bare = inference_prompts(dataclasses.replace(config, chat_template="no_reply_marker"))
    assert marked.shape == (16, 6) and bare.shape == (16, 5)
    assert (marked[:, 0] == BOS).all() and (marked[:, -1] == SEP).all()
    assert torch.equal(marked[:, :-1], bare)


class _Writes(torch.nn.Module):
    """A 'model' that writes one word and then a fixed token, whatever it is fed."""

    def __init__(self, then: int, vocab: int = 14) -> None:
        super().__init__()
        self.then, self.vocab = then, vocab
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens, *args, **kwargs):
        logits = torch.zeros(*tokens.shape, self.vocab)
        logits[..., 7] = 1.0
        logits[:, -1, self.then if tokens.shape[1] > 6 else 7] = 5.0
        return logits


def test_decoding_stops_at_the_token_its_stopping_criterion_checks():
    config = with_overrides(TrainConfig(), {**SFT, "gen_tokens": 8})
    prompts = inference_prompts(config, 2)
    out = generate(_Writes(EOS), prompts, config)[:, 6:].tolist()
    assert out == [[7, EOS] + [PAD] * 6] * 2 and reply(out[0], EOS) == [7, EOS]
    wrong = generate(_Writes(EOS), prompts, dataclasses.replace(config, stop_check="sep"))
    assert wrong[:, 6:].tolist() == [[7] + [EOS] * 7] * 2        # EOS written, never obeyed
    assert IGNORE not in out[0]
