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
     "59f98ec72cc10948fbb35ab32b5791d7c8136704dc89d093951e0af3d3865294"),
    ("oom", 0, None, (), {},                                    # healthy, 30 steps, 3 evals
     "3d21fbf0e0e34c969f8abc7b9450fce262a9a88cda93d1d361e21b3848afafbf"),
    ("oom", 1, None, ("checkpointing",), {"steps": 4},
     "7cbeeb3146f3a3884aea3949a5eb829ffd30e270733521218343752160c950b8"),
    ("oom", 0, "kept_graph", (), {},                            # climbs, OOM after 17 steps
     "8b45e857a1dc7fea5c94ca0328cb4dea7d620ed4d7da101e3675a6e2c5ad40a3"),
    ("oom", 1, "eval_with_grad", (), {},                        # OOM at the first evaluation
     "2a8fb8d335fb6aaf7a2bcd3a155a85fad04afa4b68df95c08e1a86e99f56172c"),
    ("oom", 2, "kept_graph", ("detach_metric",), {},
     "db47d5540a2df8ece919a42d8d4010ca93db7cc936ca49a0645557e4152466f3"),
    ("oom", 0, "batch_too_large", ("checkpointing",), {},       # still OOM, inside checkpoint
     "a349c591b7a183a3c1e68fe646ed2b3f37ff7ba87e4ce49c1defc37c29c78523"),
    ("oom", 3, None, (), {"precision": "fp16", "steps": 6},     # GradScaler under the tracker
     "5d093c604a277f0494bdc9c03a238120163d068a5acde0767dc6493c0830b7de"),
    ("oom", 4, None, (), {"precision": "bf16", "optimizer": "sgd", "steps": 6},
     "4c00424c212c20eae32eaedc954b6fe40b792685c15dff5f86a1e852c4094eb2"),
    ("nan_loss", 0, "lr_too_high", (), {},
     "0017b7c7b4fdac8bfd4b4728f029509edb381444509fdf5bd240ca6459be25b7"),
    ("nan_loss", 5, "fully_masked_row", (), {},
     "48b0f60052315cdd35faf1f16cfe475da4cc73ce85a556356ca07a3aadc9b3c8"),
    ("bad_lr", 1, "lr_too_low", (), {"optimizer": "adam"},
     "52f8bdc4f4adbfe7fc1e39cbc8b11859454248eb0b13a40c8d7c32fc60c7ba54"),
    ("repetitive_decoding", 0, "sampling_ignored", (), {"steps": 30},
     "2895649fce41bbc6a9ef6f08addfc1b1c8da084f12341db551437ae8ae96f096"),
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
