"""Start-up: torch._dynamo stays unimported, and bypassing torch's dynamo wrappers changes nothing.

`sim.without_dynamo` hands the loop torch's own optimizers in subclasses that skip the wrappers
which import torch._dynamo (over a second), and strips the same wrapper from the simulated
device's dispatch hook. Where the wrappers are not recognised it falls back to torch's classes;
these tests check that both paths give bit-identical training, and that the fast path is taken
on the torch versions it was verified on.
"""
import dataclasses
import pickle
import subprocess
import sys

import pytest
import torch

from debugsim.sim import loop as loop_module
from debugsim.sim import without_dynamo
from debugsim.sim.config import TrainConfig, with_overrides
from debugsim.sim.device import SimulatedDevice
from debugsim.sim.loop import build_optimizer, train
from debugsim.sim.telemetry import Recorder

# torch releases on which the wrappers were checked by hand (see the module's docstring); a
# silent fall-back to the slow path on one of them is a failure, elsewhere it is a skip
VERIFIED = ("2.2.", "2.4.", "2.13.", "2.14.")
OPTIMIZERS = (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fast_path_taken() -> bool:
    return all(without_dynamo.optimizer_class(cls) is not cls for cls in OPTIMIZERS)


def test_the_fast_path_is_taken_on_verified_torch_versions():
    if not torch.__version__.startswith(VERIFIED):
        pytest.skip(f"torch {torch.__version__} is not among the verified {VERIFIED}")
    assert without_dynamo.REASON is None
    assert fast_path_taken(), "torch's dynamo wrappers were not recognised"


def test_runs_do_not_import_torch_dynamo():
    if not fast_path_taken():
        pytest.skip(f"public path on this torch ({without_dynamo.REASON or 'not recognised'})")
    code = (
        "import sys\n"
        "from debugsim.sim import app, registry\n"
        "for name in ('nan_loss', 'oom'):   # untracked; tracked by the simulated device\n"
        "    cause = registry.get(name).causes[0].id\n"
        "    result = app.simulate(name, 0, cause, settings={'steps': 6})\n"
        "    assert result.records or result.status == 'oom', (name, result.status)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('torch._dynamo'))\n"
        "assert not loaded, loaded[:5]\n")   # (torch 2.4's checkpoint imports torch._inductor.config: 15 ms)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_eager_optimizers_are_torch_optimizers_with_hooks_and_state_dicts():
    model = torch.nn.Linear(3, 2)
    for cls in OPTIMIZERS:
        optimizer = without_dynamo.optimizer_class(cls)(model.parameters(), lr=0.1)
        assert isinstance(optimizer, cls) and type(optimizer).__name__ == cls.__name__
        calls = []
        optimizer.register_step_pre_hook(lambda *a: calls.append("pre"))
        optimizer.register_step_post_hook(lambda *a: calls.append("post"))
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        assert calls == ["pre", "post"]
        optimizer.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in model.parameters())
        again = without_dynamo.optimizer_class(cls)(model.parameters(), lr=0.1)
        again.load_state_dict(optimizer.state_dict())
        assert again.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
        copy = pickle.loads(pickle.dumps(optimizer))
        assert type(copy) is type(optimizer) and copy.defaults == optimizer.defaults


def test_the_eager_step_sets_grad_mode_as_torchs_wrapper_does():
    seen = []

    def raw_step(self, closure=None):
        seen.append(torch.is_grad_enabled())

    step = without_dynamo._eager_step(raw_step)
    for differentiable in (False, True):
        holder = type("Holder", (), {"defaults": {"differentiable": differentiable}})()
        step(holder)
        assert torch.is_grad_enabled()
    assert seen == [False, True]


def _trajectory(config, torch_classes: bool, monkeypatch):
    with monkeypatch.context() as patch:
        if torch_classes:
            patch.setattr(loop_module, "optimizer_class", lambda cls: cls)

            class TorchWrapped(SimulatedDevice):          # torch wraps this hook again (>= 2.5)
                __torch_dispatch__ = SimulatedDevice.__torch_dispatch__
            patch.setattr(loop_module, "SimulatedDevice", TorchWrapped)
        recorder = Recorder()
        run = train(config, [recorder])
        params = [p.detach().clone() for p in run.model.parameters()]
        state = [[v.clone() if torch.is_tensor(v) else v for v in s.values()]
                 for s in run.optimizer.state.values()]
        kind = type(run.optimizer)
    return recorder, params, state, kind


@pytest.mark.parametrize("overrides", [
    {"optimizer": "adamw", "weight_decay": 0.1},
    {"optimizer": "adam", "grad_clip": 0.5},
    {"optimizer": "sgd", "momentum": 0.9, "lr": 0.3},
    {"precision": "fp16", "loss_scale": "dynamic"},          # GradScaler.step(optimizer)
    {"memory_budget_mib": 8.0},                               # tracked, with a budget
], ids=["adamw", "adam", "sgd", "fp16-scaler", "tracked"])
def test_training_is_bit_identical_either_way(overrides, monkeypatch):
    config = with_overrides(TrainConfig(), {"steps": 5, "eval_every": 2, **overrides})
    fast = _trajectory(config, False, monkeypatch)
    slow = _trajectory(config, True, monkeypatch)
    assert slow[3].__module__.startswith("torch.optim")
    assert fast[0].records == slow[0].records and fast[0].end == slow[0].end
    assert all(torch.equal(a, b) for a, b in zip(fast[1], slow[1]))
    for a, b in zip(fast[2], slow[2]):
        assert all(torch.equal(x, y) if torch.is_tensor(x) else x == y for x, y in zip(a, b))


def test_build_optimizer_returns_the_configured_kind():
    model = torch.nn.Linear(2, 2)
    for name, cls in (("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                      ("sgd", torch.optim.SGD)):
        config = dataclasses.replace(TrainConfig(), optimizer=name)
        optimizer = build_optimizer(config, model)
        assert isinstance(optimizer, cls)
        if cls is not torch.optim.AdamW:
            assert not isinstance(optimizer, torch.optim.AdamW)
