"""metrics.jsonl is pinned byte for byte: speed work must not move a single recorded number.

The hashes below were produced by the code just before the start-up and memory-tracker work
was merged (the honest-grading work had changed the recipes on purpose since bb35dc7: incidents,
code-backed causes, config files without implementation fields), on torch 2.13.0+cpu, x86-64 with AVX512 kernels, one thread. They cover
the memory tracker (the `oom` scenario tracks memory with a 4 MiB budget: its mem_mib,
mem_peak_mib, peak breakdown, out-of-memory step and message), checkpointing under the
tracker, fp16 with a GradScaler, bf16 with SGD, and untracked runs of the other scenarios with
each of torch's optimizers (AdamW, Adam, SGD).

Floating-point results depend on the torch build and on which CPU kernels it picks, so the pins
are checked only on the build and CPU capability they were taken on; elsewhere the test is
skipped and says why. If a scenario's recipe changes on purpose (its base config, a fault), the
affected pins change legitimately: re-pin them from a commit that changes nothing else, and say
so in that commit.
"""
import hashlib

import pytest
import torch

from debugsim.sim import app

PINNED_TORCH = "2.13.0+cpu"
PINNED_CPU = "AVX512"

# (scenario, seed, cause, fixes, settings, sha256 of metrics.jsonl)
PINS = [
    ("oom", 0, "batch_too_large", (), {},                       # OOM at step 0, forward pass
     "980f43756a2d546d5d9520b8e6a9c6aaade3331af7db8dd1dd7bc096d5b07a24"),
    ("oom", 0, None, (), {},                                    # healthy, 30 steps, 3 evals
     "6070f1654b19518d99b0e0e1889d4505aaf21b62a883a579a5a32d7b8abf9ace"),
    ("oom", 1, None, ("checkpointing",), {"steps": 4},
     "e389bdc22c43d2b399cfb937bf5144a9c1c1f8776ab0941997309bd6b24bb42a"),
    ("oom", 0, "kept_graph", (), {},                            # climbs, OOM after 17 steps
     "fe5470c5d34e4ab47616f967600cb520e0660f15356b37ba97e249ff023c0166"),
    ("oom", 1, "eval_with_grad", (), {},                        # OOM at the first evaluation
     "1c346dd250d295f8519b4e1f9c4d06c50897a58c342084409a6305595e2bdc8d"),
    ("oom", 2, "kept_graph", ("detach_metric",), {},
     "393f229f62cb38d6bf9033cea48eddbd326685f912d4a6c1c9e205df842f2b3f"),
    ("oom", 0, "batch_too_large", ("checkpointing",), {},       # still OOM, inside checkpoint
     "5dd1fbf733d35e7599c5abb41358aae407485292160e615a0019d3b769c6520c"),
    ("oom", 3, None, (), {"precision": "fp16", "steps": 6},     # GradScaler under the tracker
     "b0fb47dcf0c615ff99fde17ac269e6fe9e7a635210f5e24e2408bda1b7bc8574"),
    ("oom", 4, None, (), {"precision": "bf16", "optimizer": "sgd", "steps": 6},
     "a00bfe5958b01fbe4606579466b9c59af845e19eefe9e758ae939592b4e6ed63"),
    ("nan_loss", 0, "lr_too_high", (), {},
     "b9acf47a470150f0c2bf6efcf303c85df465e3a7636798b9f9c48e711e650df2"),
    ("nan_loss", 5, "fully_masked_row", (), {},
     "c232158f3bfd87af98be6340b4e4217bccf9465f0c183b7fea108e3a5d977a83"),
    ("bad_lr", 1, "lr_too_low", (), {"optimizer": "adam"},
     "c45cdd9daac4a6582d74b7dcae5768d69bb8d85a876e5da6ef2627112637cf57"),
    ("repetitive_decoding", 0, "sampling_ignored", (), {"steps": 30},
     "a3b920a866e87e1cd7973d0de7e02ba054bafa10879ef57d7bacbca3cdcfc0fb"),
]


def _cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:              # older torch
        return "unknown"


@pytest.fixture(autouse=True)
def pinned_build():
    if torch.__version__ != PINNED_TORCH or _cpu_capability() != PINNED_CPU:
        pytest.skip(f"pins were taken on torch {PINNED_TORCH} with {PINNED_CPU} kernels; this is "
                    f"torch {torch.__version__} with {_cpu_capability()} (floating-point results "
                    "legitimately differ across builds and kernels)")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)       # the training engine sets one thread


@pytest.mark.parametrize("scenario_id, seed, cause, fixes, sets, digest", PINS,
                         ids=[f"{p[0]}-s{p[1]}-{p[2]}{'+' + '+'.join(p[3]) if p[3] else ''}"
                              f"{'-' + ','.join(f'{k}={v}' for k, v in p[4].items()) if p[4] else ''}"
                              for p in PINS])
def test_metrics_jsonl_bytes_are_pinned(tmp_path, scenario_id, seed, cause, fixes, sets, digest):
    app.simulate(scenario_id, seed, cause, fixes, sets, out=tmp_path)
    data = (tmp_path / "metrics.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, (
        "metrics.jsonl changed; last record: " + data.decode().splitlines()[-1])
