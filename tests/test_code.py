"""The team's code as replaceable implementations, and the `code` probe that shows what ran."""
import dataclasses

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


@pytest.mark.parametrize("scenario", [s for s in registry.all_scenarios()
                                      if s.engine == "training"], ids=lambda s: s.id)
def test_training_code_bugs_are_the_teams_code_not_patches_from_outside(scenario):
    """A code bug of a training scenario is another way to write one of the team's functions
    (so the code probe can show it), never a callback that alters the loop's numbers; its fix
    sets the function back."""
    for cause in scenario.causes:
        assert not cause.fault.callbacks, cause.id
    for fix in scenario.fixes:
        assert not fix.repairs and not fix.callbacks, fix.id


def test_the_warmup_that_compounds_keeps_growing_and_the_usual_one_holds():
    """nan_loss's lr bug, read off the functions themselves: the usual code ramps to the
    configured lr and holds it; the compounding one multiplies the optimizer's lr in place and
    never stops (10x every warmup), and without a warmup it follows the schedule."""
    from types import SimpleNamespace
    from debugsim.sim.loop import lr_at
    config = TrainConfig(lr=0.01, warmup_steps=5, steps=20)
    ramps = implementations.implementations("lr_update")

    def lrs(name, config):
        optimizer = SimpleNamespace(param_groups=[{"lr": config.lr}, {"lr": config.lr}])
        return [ramps[name](optimizer, config, step) for step in range(config.steps)]

    usual = lrs("from_schedule", config)
    assert max(usual) == pytest.approx(0.01) and usual[-1] == pytest.approx(0.01)
    compounding = lrs("compounding_ramp", config)
    assert compounding[5] == pytest.approx(0.01) and compounding[15] == pytest.approx(1.0)
    no_warmup = dataclasses.replace(config, warmup_steps=0)
    assert lrs("compounding_ramp", no_warmup) == [lr_at(no_warmup, s) for s in range(20)]
