"""What a learner practises here transfers to the tools they use at work: the simulated
out-of-memory error is PyTorch's, the allocation history opens in PyTorch's memory visualiser,
a run's scalars read back from TensorBoard event files."""
import pickle
import re
import sys
from collections import Counter

import pytest
import torch

from debugsim import cli
from debugsim.sim import app
from debugsim.sim.device import MiB, SimulatedDevice, format_size, record_memory_history
from debugsim.sim.memory_snapshot import MemoryHistory, write

# PyTorch's caching allocator, as it words an out-of-memory error (sizes by its format_size)
SIZE = r"\d+(\.\d\d (KiB|MiB|GiB)| bytes)"
CUDA_OOM = re.compile(
    rf"^CUDA out of memory\. Tried to allocate {SIZE}\. GPU 0 \(simulated device\) has a total "
    rf"capacity of {SIZE} of which {SIZE} is free\. Including non-PyTorch memory, this process "
    rf"has {SIZE} memory in use\. Of the allocated memory {SIZE} is allocated by PyTorch, and "
    rf"{SIZE} is reserved by PyTorch but unallocated\. If reserved but unallocated memory is "
    r"large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")


def test_the_simulated_oom_is_caught_as_torchs_own_error():
    device = SimulatedDevice(capacity_bytes=MiB)
    caught = None
    try:
        with device:
            kept = torch.zeros(200_000)                        # 781.25 KiB
            torch.zeros(100_000)                               # 390.62 KiB more: over
    except torch.OutOfMemoryError as error:                    # as a training script would
        caught = error
    assert caught is not None and CUDA_OOM.match(str(caught)), caught
    assert "Tried to allocate 390.62 KiB" in str(caught) and "of which 242.75 KiB is free" \
        in str(caught)
    assert pickle.loads(pickle.dumps(caught)).args == caught.args
    assert [format_size(n) for n in (1024, 1025, MiB, MiB + 1, 3 * 2 ** 30)] == \
        ["1024 bytes", "1.00 KiB", "1024.00 KiB", "1.00 MiB", "3.00 GiB"]
    del kept


# --- memory snapshots ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def leak(tmp_path_factory):
    """oom/kept_graph run with --memory-snapshot (one real run, shared)."""
    out = tmp_path_factory.mktemp("leak")
    result = app.run(app.injected("oom", 0, "kept_graph"), out, plots=False,
                     memory_snapshot=True)
    with open(out / app.SNAPSHOT_FILE, "rb") as f:
        assert f.read(2) == b"\x80\x04"                        # pickle protocol 4
    with open(out / app.SNAPSHOT_FILE, "rb") as f:
        return result, pickle.load(f), out


def test_a_snapshot_reads_in_torchs_memory_viz_and_shows_the_leak(leak):
    from torch.cuda import _memory_viz                         # what `python -m ...` runs
    result, snapshot, _ = leak
    assert result.status == "oom"
    stats = _memory_viz.segsum(snapshot)                       # `stats`: checks its accounting
    assert "segments: 1" in stats and "total_allocated:" in stats
    trace = _memory_viz.trace(snapshot)                        # `trace`
    assert trace.count("raise OutOfMemoryError") == 1
    events = snapshot["device_traces"][0]
    assert {e["action"] for e in events} == {"alloc", "free_requested", "free_completed", "oom"}
    categories = Counter(e["category"] for e in events if e["action"] == "alloc")
    assert set(categories) == {"parameter", "gradient", "optimizer_state", "activation",
                               "input", "unknown"}
    # every frame is the training code's; none of torch's or debugsim's machinery
    files = {f["filename"] for e in events for f in e["frames"]}
    assert files and all(f.startswith(("sim/loop.py", "sim/models.py",
                                       "sim/callbacks.py", "sim/data.py", "scenarios/"))
                         for f in files)
    assert events[-1]["action"] == "oom" or any(e["action"] == "oom" for e in events[-50:])
    # the leak: one place in the code owns most blocks alive at the out-of-memory, one or
    # more per step, and its allocations run through the whole trace (they grow)
    live = [b for b in snapshot["segments"][0]["blocks"] if b["state"] == "active_allocated"]
    site, count = Counter(_where(b["frames"]) for b in live).most_common(1)[0]
    assert count >= len(result.records)
    leaked = {b["address"] for b in live if _where(b["frames"]) == site}
    positions = [i for i, e in enumerate(events) if e["action"] == "alloc"
                 and e["addr"] in leaked and _where(e["frames"]) == site]
    assert positions[0] < len(events) // 4 and positions[-1] > 3 * len(events) // 4


def _where(frames):
    return f"{frames[0]['filename']}:{frames[0]['line']}" if frames else "?"


def test_the_snapshot_is_capped_and_says_so(tmp_path):
    history = MemoryHistory(summarise_after=300, max_entries=800)
    with record_memory_history(history):
        app.execute(app.prepare("oom", 0, settings={"steps": 4, "eval_every": 0}))
    meta = history.snapshot["debugsim"]
    assert meta["simulated"] and meta["events_recorded"] > 800
    assert len(history.snapshot["device_traces"][0]) == meta["events_in_trace"] <= 800
    assert meta["events_summarised"] + meta["events_dropped_oldest"] == \
        meta["events_recorded"] - meta["events_in_trace"] > 0
    assert "300" in meta["note"] and "800" in meta["note"]
    from torch.cuda import _memory_viz
    _memory_viz.segsum(write(history.snapshot, tmp_path / "s.pickle") and history.snapshot)


def test_a_device_not_recording_runs_the_plain_tracker():
    device = SimulatedDevice(capacity_bytes=MiB)
    assert device.history is None and "_count" not in vars(device)
    assert device._on_free == device._release


def test_the_memory_probe_exports_a_snapshot(tmp_path):
    from debugsim.sim import session
    result = app.execute(app.prepare("nan_loss", 0, settings={"steps": 2}))
    text = session.run_probe("memory snapshot", result, tmp_path / "plots")
    path = tmp_path / "memory_snapshot.pickle"
    assert str(path) in text and "memory_viz" in text
    with open(path, "rb") as f:
        snapshot = pickle.load(f)
    assert snapshot["segments"][0]["blocks"] and snapshot["device_traces"][0]


# --- TensorBoard ----------------------------------------------------------------------------

def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    import matplotlib.image
    import numpy as np
    from debugsim.sim.doctor.readers import read_tensorboard
    from debugsim.sim.tensorboard import write_run
    result = app.execute(app.prepare("nan_loss", 0, "fully_masked_row", settings={"steps": 3}))
    png = tmp_path / "loss.png"
    matplotlib.image.imsave(png, np.zeros((6, 8, 3)))
    write_run(result, tmp_path / "tb", [png])
    events = list((tmp_path / "tb").glob("events.out.tfevents*"))
    log = read_tensorboard(events[0])
    assert [s for s, _ in log.points("loss")] == [0, 1, 2]
    nan_steps = [r["loss"] is None or r["loss"] != r["loss"] for r in result.records]
    assert any(nan_steps) and [v != v for v in log.values("loss")] == nan_steps   # NaN kept
    assert log.values("lr") == pytest.approx([r["lr"] for r in result.records])  # float32
    from tensorboardX.proto.event_pb2 import Event
    assert b"plots/loss" in events[0].read_bytes() and Event  # the plot went in as an image


def test_without_the_extra_tensorboard_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)     # as if not installed
    monkeypatch.setattr(sys, "argv", ["debugsim", "run", "oom_13b", "--seed", "0", "--out",
                                      str(tmp_path / "r"), "--tensorboard", str(tmp_path / "t")])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and len(err.splitlines()) == 1
    assert "pip install 'debugsim[tensorboard]'" in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()
