"""The pretrained checkpoint is made once and kept on disk in the debugsim home."""
import torch

from debugsim.sim import app, pretrained
from debugsim.sim.loop import train


class FakeRun:
    def __init__(self, seed):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(3, 2)


def test_made_once_then_loaded_from_the_home_and_remade_when_unreadable(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path))
    config = app.incident("lora_wont_learn", 0).config
    calls = []

    def fake_train(recipe):
        calls.append(recipe.steps)
        return FakeRun(len(calls))

    pretrained.clear_memory()
    cache = tmp_path / "cache"
    cache.mkdir()
    made = pretrained._file("pretrained", (config.model, config.vocab_size, config.d_model,
                                           config.seq_len, config.n_layer, config.n_head),
                            pretrained.with_recipe(config).to_dict())
    older = made.with_name(made.name.rsplit("-", 1)[0] + "-0000000000000000.pt")
    older.write_bytes(b"made by other code")
    first = pretrained.pretrained_state(config, fake_train)
    assert len(calls) == 1 and made.exists() and not older.exists()

    pretrained.clear_memory()
    again = pretrained.pretrained_state(config, fake_train)
    assert len(calls) == 1                                        # loaded, not trained
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)

    made.write_bytes(b"\x00 truncated")
    pretrained.clear_memory()
    pretrained.pretrained_state(config, fake_train)
    assert len(calls) == 2                                        # unreadable: made again
    pretrained.clear_memory()
    pretrained.pretrained_state(config, fake_train)
    assert len(calls) == 2 and not list(cache.glob(".*"))   # no temporary left
    pretrained.clear_memory()


def test_loaded_checkpoint_is_the_trained_one_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path))
    config = app.incident("lora_wont_learn", 0).config           # the MLP: 80 quick steps
    pretrained.clear_memory()
    trained = pretrained.pretrained_state(config, train)
    pretrained.clear_memory()
    loaded = pretrained.pretrained_state(config, lambda recipe: (_ for _ in ()).throw(
        AssertionError("trained again")))
    assert all(torch.equal(trained[k], loaded[k]) for k in trained)
    pretrained.clear_memory()
