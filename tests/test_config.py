import pytest

from debugsim.sim.config import (ConfigError, FIELD_TYPES, TrainConfig, parse_assignments,
                                   with_overrides)


@pytest.mark.parametrize("pairs, message", [
    (["lr=-1"], "lr=-1.0: must be greater than 0"),
    (["batch_size=abc"], "batch_size='abc': expected an integer"),
    (["lrr=1"], "unknown setting 'lrr' (did you mean 'lr'?); settings: "
                + ", ".join(FIELD_TYPES)),
    (["foo=1"], "unknown setting 'foo'; settings: " + ", ".join(FIELD_TYPES)),
    (["seed=4294967296"], "seed=4294967296: must be at most 4294967295"),
    (["precision=fp8"], "precision='fp8': choose one of fp32, fp16, bf16"),
    (["steps=1.5"], "steps='1.5': expected an integer"),
    (["lr"], "'lr': expected key=value, e.g. lr=3e-4"),
    (["lr=nan"], "lr=nan: must be a finite number"),
])
def test_bad_settings_give_one_line_errors(pairs, message):
    with pytest.raises(ConfigError) as info:
        parse_assignments(pairs)
    assert str(info.value) == message


def test_values_are_parsed_to_field_types():
    assert parse_assignments(["lr=3e-4", "steps=1e2", "skip_nonfinite=yes"]) == {
        "lr": 3e-4, "steps": 100, "skip_nonfinite": True}


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="divisible"):
        with_overrides(TrainConfig(), {"d_model": 30, "n_head": 4})
    # a warmup longer than the run is allowed: the lr just never reaches its peak (an
    # incident's warmup must not forbid a learner's short exploratory run)
    assert with_overrides(TrainConfig(), {"warmup_steps": 10, "steps": 5}).warmup_steps == 10


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().lr = 1.0
