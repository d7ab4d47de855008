"""Work done in a forked process (sim/parallel.py) gives what the same work gives here.

The forked paths run in a fresh interpreter: the test session has other threads (the verdict
matrix), and `parallel.available()` rightly refuses to fork beside them.
"""
import json
import os
import subprocess
import sys

import pytest

from debugsim.sim import parallel

SCRIPT = r"""
import json, os, sys, tempfile
from pathlib import Path
from debugsim.sim import app, parallel, registry, runs

forks = []
start = parallel.start
parallel.start = lambda *a, **k: forks.append(a[0].__name__) or start(*a, **k)
report = {"available": parallel.available()}

# the child's result, its exception, and its death
report["value"] = parallel.start(sum, [1, 2, 3]).result()
handle = parallel.start(int, "seven")
try:
    handle.result()
except ValueError as error:
    report["raised"] = str(error)
handle = parallel.start(os._exit, 3)
try:
    handle.result()
except parallel.ChildFailed as error:
    report["died"] = str(error)
import torch
handle = parallel.start(torch.arange, 5)          # a tensor, read after the child has gone
handle._process.join()
report["tensor"] = handle.result().tolist()
handle = parallel.start(pow, 2, awaits_input=True, warm=lambda: None)
handle.send(10)
report["sent"] = handle.result()

# grading: the broken run forked, the fixed one here; then both here
scenario = registry.get("bad_lr")
incident = app.incident("bad_lr", 0)
fix = scenario.resolves[incident.cause_id][0]
graded = json.dumps(app.grade(incident, incident.cause_id, [fix]).to_dict(), sort_keys=True)
report["grade forks"] = list(forks)

# a run whose plots a forked painter draws
folder = Path(tempfile.mkdtemp())
app.run(incident, folder / "forked")
report["run forks"] = list(forks)

parallel.disable()
runs.clear_cache()
report["same verdict"] = graded == json.dumps(
    app.grade(incident, incident.cause_id, [fix]).to_dict(), sort_keys=True)
app.run(incident, folder / "here")
report["same files"] = sorted(
    str(path.relative_to(folder / "here")) for path in (folder / "here").rglob("*")
    if path.is_file() and path.name != "timings.jsonl"
    and path.read_bytes() == (folder / "forked" / path.relative_to(folder / "here")).read_bytes())
report["files"] = sorted(str(p.relative_to(folder / "here")) for p in (folder / "here").rglob("*")
                         if p.is_file() and p.name != "timings.jsonl")
print(json.dumps(report))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or parallel.usable_cores() < 2,
                    reason="forks only on Linux with two usable cores")
def test_forked_runs_and_plots_equal_the_ones_done_here(tmp_path):
    env = {**os.environ, "DEBUGSIM_PARALLEL": "1", "DEBUGSIM_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["available"]
    assert report["value"] == 6 and report["sent"] == 1024 and report["tensor"] == [0, 1, 2, 3, 4]
    assert "invalid literal" in report["raised"]
    assert "exit code 3" in report["died"]
    assert report["grade forks"][-1] == "_run_fields"        # the broken run went to a child
    assert report["run forks"][-1] == "_draw"                 # ... and a run's plots
    assert report["same verdict"]
    assert "plots/dashboard.png" in report["files"] and "metrics.jsonl" in report["files"]
    assert report["same files"] == report["files"]            # byte for byte


def test_forking_is_refused_beside_other_threads_and_when_turned_off(monkeypatch):
    import threading
    monkeypatch.setenv("DEBUGSIM_PARALLEL", "1")
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not parallel.available()
    finally:
        stop.set()
        worker.join()
    monkeypatch.setenv("DEBUGSIM_PARALLEL", "0")
    assert not parallel.available()
