"""metrics.jsonl is pinned byte for byte: speed work must not move a single recorded number.

The hashes below were produced by the code at commit bb35dc7 (before the start-up and
memory-tracker work), on torch 2.13.0+cpu, x86-64 with AVX512 kernels, one thread. They cover
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

from debugsim.sim import registry, runner

PINNED_TORCH = "2.13.0+cpu"
PINNED_CPU = "AVX512"

# (scenario, seed, cause, fixes, settings, sha256 of metrics.jsonl)
PINS = [
    ("oom", 0, "batch_too_large", (), {},                       # OOM at step 0, forward pass
     "bdc5991b4745affbe80004caabb73688ab94b18895f0fe16ea607320f1e08f6d"),
    ("oom", 0, None, (), {},                                    # healthy, 30 steps, 3 evals
     "56af666da4f048a4bf8e8c22eb4920dfa598fbb6b9603e9d00ac5f640bc64136"),
    ("oom", 1, None, ("checkpointing",), {"steps": 4},
     "ff81e4ef07e7fc52986c2ae177ca257c56547e17903960306fd49267cf5a99ae"),
    ("oom", 0, "kept_graph", (), {},                            # climbs, OOM after 17 steps
     "ba33a5c9c452904cae5714d871723c7e26b2eeaa0ff08316f6f3826dd400cbc6"),
    ("oom", 1, "eval_with_grad", (), {},                        # OOM at the first evaluation
     "6052f27d251f4c8dab54b21466e5db0c768cacf2d9a1a88a2b3454c3618504c9"),
    ("oom", 2, "kept_graph", ("detach_metric",), {},
     "3b0d9486bfe3e7798e261f3bad915481bbc2bf02fbf37479ddf82b34c2094753"),
    ("oom", 0, "batch_too_large", ("checkpointing",), {},       # still OOM, inside checkpoint
     "c251cd796a737f5a9df3b9c1124b8cf935feef230a3111ac8753cce3a6152b9c"),
    ("oom", 3, None, (), {"precision": "fp16", "steps": 6},     # GradScaler under the tracker
     "eab48fe7da3b938cc57309574b032fc0256cdedf5e365a89feb292e106a6033a"),
    ("oom", 4, None, (), {"precision": "bf16", "optimizer": "sgd", "steps": 6},
     "50a66deb85093c831e68aea33cb38d8f8826b674d7a2c16deb02222a75293fc3"),
    ("nan_loss", 0, "lr_too_high", (), {},
     "b384291c48fe5aa9a9721a182809cc3e18ea6a6a8c740da450fa0f5a47e46d0b"),
    ("nan_loss", 5, "fully_masked_row", (), {},
     "7f00c8369d87e681eac29b9b3edd1bac9039b91dbecce53b8c3f53185a3d0203"),
    ("bad_lr", 1, "lr_too_low", (), {"optimizer": "adam"},
     "71cedc95ca15f6609359a176fd91bad8f7b05967e068bbe406180936189b3b5b"),
    ("repetitive_decoding", 0, "greedy_no_penalty", (), {"steps": 30},
     "8bb30e28a4bda0d25937bdab1c805c3178fd12ba305f5456284b585a5f309a22"),
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
    torch.set_num_threads(before)       # runner.execute sets one thread


@pytest.mark.parametrize("scenario_id, seed, cause, fixes, sets, digest", PINS,
                         ids=[f"{p[0]}-s{p[1]}-{p[2]}{'+' + '+'.join(p[3]) if p[3] else ''}"
                              f"{'-' + ','.join(f'{k}={v}' for k, v in p[4].items()) if p[4] else ''}"
                              for p in PINS])
def test_metrics_jsonl_bytes_are_pinned(tmp_path, scenario_id, seed, cause, fixes, sets, digest):
    runner.execute(registry.get(scenario_id), seed, cause, fixes, sets, out_dir=tmp_path)
    data = (tmp_path / "metrics.jsonl").read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, (
        "metrics.jsonl changed; last record: " + data.decode().splitlines()[-1])
