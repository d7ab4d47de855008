"""The team's code as replaceable implementations, and the `code` probe that shows what ran."""
import pytest

from debugsim.sim import app, implementations, registry
from debugsim.sim.config import IMPLEMENTATIONS, TrainConfig
from debugsim.sim.probes import find
from debugsim.sim.probes.code import code_listing, render_code

MARKERS = ("bug", "wrong", "broken", "unsafe", "oops", "fixme", "todo", "hack", "should")


def _code_causes() -> list:
    return list(_each_code_cause())


def _each_code_cause():
    for scenario in registry.all_scenarios():
        for cause in scenario.causes:
            slots = [k for k in cause.fault.config if k in IMPLEMENTATIONS]
            if slots:
                yield pytest.param(scenario, cause, slots, id=f"{scenario.id}-{cause.id}")


@pytest.mark.parametrize("slot", IMPLEMENTATIONS)
def test_every_implementation_is_registered_with_one_docstring_per_slot(slot):
    found = implementations.implementations(slot)
    assert list(found) == list(IMPLEMENTATIONS[slot])
    assert getattr(TrainConfig(), slot) == implementations.usual(slot)
    docs = {function.__doc__ for function in found.values()}
    assert len(docs) == 1 and None not in docs, f"{slot}: implementations read differently"
    assert len({f.__name__ for f in found.values()}) == len(found)


@pytest.mark.parametrize("scenario, cause, slots", _code_causes())
def test_the_code_probe_shows_the_bug_and_the_healthy_run_does_not(scenario, cause, slots):
    assert set(slots) <= set(scenario.code), f"{cause.id} changes code the probe does not show"
    broken = app.injected(scenario, 4, cause.id, key="code-probe")
    healthy = broken.healthy()
    for slot in slots:
        bug = implementations.source_of(implementations.implementations(slot)[
            cause.fault.config[slot]])
        usual = implementations.source_of(implementations.implementations(slot)[
            implementations.usual(slot)])
        shown_broken = [part["source"] for part in code_listing(broken)]
        shown_healthy = [part["source"] for part in code_listing(healthy)]
        assert bug != usual
        assert bug in shown_broken and usual not in shown_broken
        assert usual in shown_healthy and bug not in shown_healthy
        for text in (render_code(code_listing(broken)), render_code(code_listing(healthy))):
            lowered = text.lower()
            assert cause.id not in text and cause.title not in text
            assert not any(name in text for name in IMPLEMENTATIONS[slot])
            assert not [m for m in MARKERS if m in lowered], text


def test_the_code_probe_names_one_function_and_refuses_an_unknown_one(tmp_path):
    scenario = registry.get("repetitive_decoding")
    result = app.simulate(scenario, 0, settings={"steps": 2})
    probe = find("code", scenario)
    one = probe.run(result, ["kv_cache_update"], tmp_path)
    assert one.count("--- sim/") == 1 and "def extend_cache" in one
    with pytest.raises(ValueError, match="extend_cache"):
        probe.run(result, ["no_such_function"], tmp_path)


def test_implementation_fields_stay_out_of_config_files_and_settings():
    recipe = TrainConfig().recipe_dict()
    assert not set(IMPLEMENTATIONS) & set(recipe)
    with pytest.raises(app.UsageError, match="how the code is written"):
        app.with_fixes(app.prepare("repetitive_decoding", 0), settings=[
            "kv_cache_update=store_each_step"])
