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
     "0b58139642711ec307163d319571b404457bf9eb98ab457214d560987f1798c3"),
    ("oom", 0, None, (), {},                                    # healthy, 30 steps, 3 evals
     "d946558d6f604792f5d085cc75bce9c5d41e52cc8f908c5bda6fa84f8101f23d"),
    ("oom", 1, None, ("checkpointing",), {"steps": 4},
     "7c22712f47d12ee5572b928365091ff1c941205705ba6814867d11fb9521c340"),
    ("oom", 0, "kept_graph", (), {},                            # climbs, OOM after 17 steps
     "38875fe32bbd26ca19bb683cdf226287c886551141d410063c6eb9bd3c4bc18e"),
    ("oom", 1, "eval_with_grad", (), {},                        # OOM at the first evaluation
     "09eb571c31210a3f024ebff87a867a36d8b9c83b5c8e427c9638b65337be2ddd"),
    ("oom", 2, "kept_graph", ("detach_metric",), {},
     "eb9d09454a9bbc613b81077359c70890b2657ecde969d21614fe7c531c24ab95"),
    ("oom", 0, "batch_too_large", ("checkpointing",), {},       # still OOM, inside checkpoint
     "8dc4f1ef4c9b3bedc999207a415f41cf0535645cd7a6366354205984d9cbedd2"),
    ("oom", 3, None, (), {"precision": "fp16", "steps": 6},     # GradScaler under the tracker
     "a8e5b7df4cb3613d4f108b357a99892971590477a9ed523441c81c6bae0c990f"),
    ("oom", 4, None, (), {"precision": "bf16", "optimizer": "sgd", "steps": 6},
     "cf35f9375512a2afe9966c7c162cdf3a7b0e08b346b5d00d880b4fedd64aebcb"),
    ("nan_loss", 0, "lr_too_high", (), {},
     "15bdd1097940b8bbcbc91d8caa35f05103a666a4ea7e978dc5c327374668998b"),
    ("nan_loss", 5, "fully_masked_row", (), {},
     "6e7591b340134f6e0607fb6fcef947bc661855bc60e5218ae20dec9844feb268"),
    ("bad_lr", 1, "lr_too_low", (), {"optimizer": "adam"},
     "73c43368b10e342aaa777c6f913003090794fd8e601662df67f0a56e25ed0831"),
    ("repetitive_decoding", 0, "sampling_ignored", (), {"steps": 30},
     "5216e3e1369b8c07d34ed5d46e006c919a5f803e2038b82b1a26aafd02a9bbc5"),
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
