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
     "729346fca3c0ee3831fffbd92ae0fcc8850f7d5a4864d3a36fd637f874c2edc4"),
    ("oom", 0, None, (), {},                                    # healthy, 30 steps, 3 evals
     "121692e56a07bb58a64e7523fd3f83015aae76607d212dde090e9f7234f69d3c"),
    ("oom", 1, None, ("checkpointing",), {"steps": 4},
     "b1adf52bd6594d3d8bd3600cc7800c046f0667bea3138b915fed0a3bd9b45196"),
    ("oom", 0, "kept_graph", (), {},                            # climbs, OOM after 17 steps
     "8c9ac97635bc853fc01e6ecb0284d26a5cdf8d94a40b43a95c4bc12a7ff48475"),
    ("oom", 1, "eval_with_grad", (), {},                        # OOM at the first evaluation
     "a563855156ee9df8fce3649b32a4bba684e759a7ca4232f949212aa75c18dc81"),
    ("oom", 2, "kept_graph", ("detach_metric",), {},
     "35746994badbd23f099231c0e2c49d26b290ccdc2c6da819db1c87e09fd39084"),
    ("oom", 0, "batch_too_large", ("checkpointing",), {},       # still OOM, inside checkpoint
     "b793cb0dbc2b4c17dbae00ecf903083c5c6795e3e1cf3b7794c37de70bd98d1e"),
    ("oom", 3, None, (), {"precision": "fp16", "steps": 6},     # GradScaler under the tracker
     "f13ec04210a75bb7b2578c35a76d687a20bc75d7003b32d452a98bbea00137ce"),
    ("oom", 4, None, (), {"precision": "bf16", "optimizer": "sgd", "steps": 6},
     "16f2c21b7ef7d1479c221defabc2925bf981cdee3a20c0dc0a2a24a8b0def33d"),
    ("nan_loss", 0, "lr_too_high", (), {},
     "f35f3e257fdff9ffb71b85108c3fe10f38611f54df66d156d595dca34893ec30"),
    ("nan_loss", 5, "fully_masked_row", (), {},
     "dc2e16b6e8ca42e25582fa3ce2b1df616fd3f1f762765b21aa088b87a47b917d"),
    ("bad_lr", 1, "lr_too_low", (), {"optimizer": "adam"},
     "7f02f97053903bdf5e3961bdefed76594d44874210488bf62d631a2ac2f19e28"),
    ("repetitive_decoding", 0, "greedy_no_penalty", (), {"steps": 30},
     "98966b394703b6bbb809142319fea3673009d87d4690a005ecadb2afe65f08bb"),
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
