"""Finished runs are kept in the debugsim home; check takes the broken run from there."""
import json

from debugsim.sim import app, registry, run_store, runs


def _trainings(monkeypatch):
    done = []
    engine = app.engine_of("bad_lr")
    execute = engine.execute
    monkeypatch.setattr(engine, "execute",
                        lambda prepared, *a, **k: done.append(prepared.fix_ids) or
                        execute(prepared, *a, **k), raising=False)
    return done


def test_check_after_run_trains_only_the_fix_and_grades_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path / "home"))
    scenario = registry.get("bad_lr")
    incident = app.incident("bad_lr", 5)
    fix = scenario.resolves[incident.cause_id][0]
    runs.clear_cache()
    fresh = json.dumps(app.grade(incident, incident.cause_id, [fix]).to_dict(), sort_keys=True)

    runs.clear_cache()
    app.run(incident, tmp_path / "run", plots=False)
    assert len(list((tmp_path / "home" / "cache" / "runs").glob("*.pickle"))) == 1
    runs.clear_cache()
    trained = _trainings(monkeypatch)
    verdict = app.check("bad_lr", 5, incident.cause_id, [fix])
    assert trained == [(fix,)]                                   # the broken run was kept
    assert json.dumps(verdict.to_dict(), sort_keys=True) == fresh

    kept = run_store.load(incident)
    assert kept.records == verdict.before.records and kept.summary == verdict.before.summary


def test_unreadable_or_other_code_runs_are_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path))
    incident = app.incident("bad_lr", 6)
    runs.clear_cache()
    run_store.save(app.execute(incident))
    [path] = (tmp_path / "cache" / "runs").glob("*.pickle")
    assert run_store.load(incident) is not None
    monkeypatch.setattr(run_store, "source_digest", lambda: "other code")
    assert run_store.load(incident) is None                      # another debugsim's runs
    monkeypatch.undo()
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path))
    path.write_bytes(b"\x80 truncated")
    assert run_store.load(incident) is None and not path.exists()


def test_the_planner_and_scratch_scenarios_are_not_kept(tmp_path, monkeypatch):
    import dataclasses
    monkeypatch.setenv("DEBUGSIM_HOME", str(tmp_path))
    run_store.save(app.execute(app.incident("oom_13b", 0)))
    scratch = dataclasses.replace(registry.get("bad_lr"))
    result = app.execute(app.prepare(scratch, 0, None, (), {"steps": 3}))
    run_store.save(result)
    assert not list(tmp_path.rglob("*.pickle"))
