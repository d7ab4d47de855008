"""lora_wont_learn: the hand-written LoRA layer, its implementations, and each cause as the
`params` probe shows it (short runs)."""
import json

import pytest
import torch

from debugsim.sim import app
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.lora import LoRALinear, trainable_report
from debugsim.sim.probes.params import parameter_report

SHORT = {"steps": 4}


def _layer(**code):
    config = with_overrides(TrainConfig(), {"lora_r": 4, "lora_alpha": 32.0, **code})
    torch.manual_seed(0)
    return LoRALinear(torch.nn.Linear(6, 5), 4, 32.0, config)


def test_a_fresh_adapter_starts_at_the_base_and_only_a_zero_pair_gets_no_gradient():
    x = torch.randn(3, 6)
    for init, gets_gradient in (("a_like_linear", True), ("both_zero", False)):
        layer = _layer(lora_init=init)
        assert torch.equal(layer(x), layer.base(x))             # B·A = 0 either way
        layer(x).square().sum().backward()
        got = [bool(p.grad.abs().sum() > 0) for p in (layer.lora_A, layer.lora_B)]
        assert got == ([False, True] if gets_gradient else [False, False])


def test_the_scaling_is_alpha_over_r_and_the_inverted_one_is_64x_smaller():
    assert _layer().scaling == 8.0
    assert _layer(lora_scaling="r_over_alpha").scaling == 0.125


def test_the_trainable_line_reads_like_peft():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert trainable_report(model)[2] == ("trainable params: 10 || all params: 30 || "
                                          "trainable%: 33.3333")


def _rows(cause):
    report = parameter_report(app.simulate("lora_wont_learn", 0, cause, settings=SHORT))
    return report, {row["name"]: row for row in report["parameters"]}


@pytest.mark.parametrize("cause", [None, "adapters_not_in_optimizer", "adapters_zero_init",
                                   "scaling_inverted", "base_trainable"])
def test_each_cause_shows_in_the_params_probe(cause):
    report, rows = _rows(cause)
    adapters = [r for name, r in rows.items() if "lora_" in name]
    base = [r for name, r in rows.items() if "lora_" not in name]
    assert len(adapters) == 4 and len(base) == 5
    if cause == "base_trainable":
        assert report["line"].endswith("trainable%: 100.0000")
        assert all(r["trainable"] and r["in_optimizer"] and r["moved"] > 0 for r in base)
        return
    assert report["line"].endswith("trainable%: 8.9407")
    assert all(not r["trainable"] and r["moved"] == 0 for r in base)
    if cause == "adapters_not_in_optimizer":
        assert all(not r["in_optimizer"] and r["moved"] == 0 for r in adapters)
        assert any(r["grad_steps"] == SHORT["steps"] for r in adapters)   # B has gradients
    elif cause == "adapters_zero_init":
        assert all(r["in_optimizer"] and r["grad_steps"] == 0 and r["moved"] == 0
                   for r in adapters)
    else:                   # healthy and inverted scaling: A and B move alike
        assert all(r["in_optimizer"] and r["moved"] > 0 for r in adapters)


def test_a_lora_run_reports_its_optimizer_state_and_its_config_shows_the_adapters(tmp_path):
    result = app.run(app.injected("lora_wont_learn", 0, "base_trainable").healthy(),
                     tmp_path / "h")
    config = json.loads((tmp_path / "h" / "config.json").read_text())["config"]
    assert (config["lora_r"], config["lora_alpha"], config["lora_targets"],
            config["base_model"]) == (4, 32.0, "hidden,out", "pretrained")
    assert not {"lora_init", "lora_scaling", "lora_freeze", "lora_setup"} & set(config)
    assert result.summary["optimizer_state_mib"] == pytest.approx(
        2 * 4 * 1472 / 2**20 + 4 * 4 / 2**20, rel=0.01)    # Adam's two moments (+ step counts)
    plain = app.simulate("bad_lr", 0, None, settings={"steps": 2})
    assert "optimizer_state_mib" not in plain.summary
    assert "lora_r" not in plain.config.recipe_dict()


def test_the_pretrained_checkpoint_leaves_the_random_state_alone():
    from debugsim.sim import pretrained
    from debugsim.sim.loop import train
    pretrained._cache.clear()
    torch.manual_seed(5)
    pretrained.pretrained_state(with_overrides(TrainConfig(), {"model": "mlp"}), train)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))
