"""The engine from Python: precision paths, checkpointing, memory accounting, determinism."""
import pytest

from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.device import SimulatedOutOfMemory
from debugsim.sim.loop import lr_at, train
from debugsim.sim.telemetry import Recorder



def run(track_memory=True, **overrides):
    recorder = Recorder()
    train(with_overrides(TrainConfig(), {"steps": 4, **overrides}), [recorder],
          track_memory=track_memory)
    return recorder


@pytest.mark.parametrize("precision, loss_scale", [("fp16", "dynamic"), ("fp16", "none"),
                                                   ("bf16", "dynamic")])
def test_mixed_precision_trains(precision, loss_scale):
    records = run(precision=precision, loss_scale=loss_scale, track_memory=False).records
    assert all(r["nonfinite"] == 0 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]


def test_a_static_loss_scale_too_large_overflows_fp16_gradients():
    records = run(precision="fp16", loss_scale="16777216", track_memory=False).records
    assert records[0]["loss"] is not None          # the forward pass is fine ...
    assert records[0]["nonfinite"] > 0             # ... the scaled backward overflowed


def test_checkpointing_cuts_activation_memory_not_the_result():
    plain, ckpt = run(steps=2), run(steps=2, activation_checkpointing=True)
    assert [r["loss"] for r in plain.records] == [r["loss"] for r in ckpt.records]
    # measured 5.1 -> 3.7 MiB: the blocks' insides are recomputed, but the logits and the
    # loss's log-softmax (vocab-sized, outside the checkpointed blocks) are still stored
    assert ckpt.end["peak_breakdown_mib"]["activations"] < \
        0.8 * plain.end["peak_breakdown_mib"]["activations"]


def test_parameters_and_adam_state_are_counted_exactly():
    recorder = run(steps=1, eval_every=0)
    model_bytes = sum(p.numel() * 4 for p in
                      __import__("debugsim.sim.models", fromlist=["x"]).build_model(TrainConfig()).parameters())
    assert recorder.end["peak_breakdown_mib"]["parameters"] * 2 ** 20 == pytest.approx(model_bytes, rel=1e-5)


def test_over_budget_raises_a_cuda_style_error():
    with pytest.raises(SimulatedOutOfMemory, match=r"CUDA out of memory\. Tried to allocate .*"
                       r"GPU 0 \(simulated device\) has a total capacity of 1024\.00 KiB"):
        run(memory_budget_mib=1.0)


def test_same_seed_same_records_different_seed_different():
    first, again, other = run(seed=5), run(seed=5), run(seed=6)
    assert first.records == again.records
    assert first.records != other.records


def test_warmup_and_schedules():
    config = with_overrides(TrainConfig(), {"lr": 1.0, "warmup_steps": 10, "steps": 110,
                                             "schedule": "cosine"})
    assert lr_at(config, 0) == pytest.approx(0.01)
    assert lr_at(config, 10) == pytest.approx(1.0)
    assert lr_at(config, 109) == pytest.approx(0.1, abs=0.01)
