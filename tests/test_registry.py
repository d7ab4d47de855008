"""The scenario registry: lookups with suggestions, and third-party packs via entry points."""
import pytest

from debugsim.sim import registry
from debugsim.sim.scenario import Criterion, Scenario


def pack_scenario(scenario_id="pack_demo"):
    return Scenario(id=scenario_id, title="from a pack", difficulty="easy", tags=("pack",),
                    story="s", base={"steps": 2}, causes=(), fixes=(), criterion=Criterion(),
                    debrief="d", interview_question="q", resolves={})


class FakeEntryPoint:
    def __init__(self, name, obj):
        self.name, self._obj = name, obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "load_warnings", [])
    yield


def test_unknown_scenario_suggests_the_closest():
    with pytest.raises(registry.UnknownScenario, match="did you mean 'bad_lr'"):
        registry.get("bad_rl")


def test_packs_load_from_entry_points_and_a_broken_pack_only_warns(fresh_registry, monkeypatch,
                                                                   capsys):
    points = [FakeEntryPoint("good", pack_scenario()),
              FakeEntryPoint("many", lambda: [pack_scenario("pack_two")]),
              FakeEntryPoint("broken", ImportError("no module named x"))]
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: points if group == registry.ENTRY_POINT_GROUP else [])
    ids = {s.id for s in registry.all_scenarios()}
    assert {"pack_demo", "pack_two", "nan_loss"} <= ids
    assert registry.load_warnings == ["scenario pack 'broken' failed to load: no module named x"]
    assert "failed to load" in capsys.readouterr().err


def test_a_pack_cannot_silently_replace_a_builtin(fresh_registry, monkeypatch):
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group: [FakeEntryPoint("clash", pack_scenario("nan_loss"))])
    registry.all_scenarios()
    assert registry.get("nan_loss").title == "The loss went NaN"
    assert "already registered" in registry.load_warnings[0]


def test_a_verdict_table_naming_an_unknown_fix_is_rejected():
    from debugsim.sim.scenario import Cause, Fault
    with pytest.raises(ValueError, match="unknown fix nope"):
        Scenario(id="x", title="t", difficulty="easy", tags=(), story="s", base={},
                 causes=(Cause("c", "c", Fault("f"), "e", "t"),), fixes=(),
                 criterion=Criterion(), debrief="d", interview_question="q",
                 resolves={"c": ("nope",)})
