"""`memory` click command: verdicts, --json, --plot, and one-line errors with exit code 2."""
import json
import pathlib
import sys

import click
import pytest
from click.testing import CliRunner

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from debugsim.sim.memplan import CATEGORIES  # noqa: E402
from debugsim.sim.memplan.command import memory_command  # noqa: E402

GB = 10**9


def run(*args):
    return CliRunner().invoke(memory_command, list(args))


def field(output, name):
    return next(line for line in output.splitlines() if line.startswith(name))


def test_llama_2_13b_full_does_not_fit_80gb():
    r = run("--model", "llama-2-13b", "--method", "full", "--gpu", "80GB")
    assert r.exit_code == 0, r.output
    assert "DOES NOT FIT" in field(r.output, "verdict")
    why = field(r.output, "why")
    assert "144.33 GB over" in why and "optimizer_states" in why and "16 B/param" in why
    assert "GB = 10^9 bytes" in r.output
    assert "1. full+offload" in r.output and "2. lora" in r.output


@pytest.mark.parametrize("method,frozen", [("lora", "bf16 (2 B/param)"), ("qlora", "NF4")])
def test_llama_2_13b_lora_and_qlora_fit_80gb(method, frozen):
    r = run("--model", "llama-2-13b", "--method", method, "--gpu", "80GB")
    assert r.exit_code == 0, r.output
    assert "FITS" in field(r.output, "verdict")
    why = field(r.output, "why")
    assert why.startswith("why        fits:") and frozen in why and "no grads or optimizer state" in why


def test_json_structure():
    r = run("--model", "llama-2-13b", "--method", "full", "--gpu", "80GB", "--gpus", "8", "--zero", "3",
            "--offload", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["units"] == "bytes" and d["gpu_bytes"] == 80 * GB and d["gpus"] == 8
    assert set(d["per_gpu"]) == set(CATEGORIES)
    assert all(isinstance(v, int) for v in d["per_gpu"].values())
    assert d["per_gpu_total"] == sum(d["per_gpu"].values())
    assert d["all_gpus_total"] == 8 * d["per_gpu_total"]
    assert d["cpu_per_rank"] == {"master_weights": 52_063_457_280 // 8, "optimizer_states": 104_126_914_560 // 8}
    assert d["fits"] is True and d["headroom_bytes"] == 80 * GB - d["per_gpu_total"]
    assert d["params"] == 13_015_864_320 and d["strategy"]["label"] == "full+zero3+offload"
    assert d["per_gpu"]["gather_buffer"] > 0
    assert d["param_breakdown"]["lm_head"] == 32000 * 5120
    assert isinstance(d["ranked"], list) and d["ranked"][0]["fits"]


def test_json_zero_paper_numbers_via_params():
    totals = []
    for z in "0123":
        r = run("--params", "7.5e9", "--zero", z, "--gpus", "64", "--json")
        assert r.exit_code == 0, r.output
        totals.append(json.loads(r.output)["per_gpu_total"])
    assert totals == [120 * GB, 31_406_250_000, 16_640_625_000, 1_875_000_000]


def test_inference_kv_cache_and_bare_g():
    r = run("--model", "opt-13b", "--inference", "--seq", "2048", "--gpu", "24G", "--json")
    d = json.loads(r.output)
    assert d["per_gpu"]["kv_cache"] == 1_677_721_600 and d["gpu_bytes"] == 24 * GB
    text = run("--model", "opt-13b", "--inference", "--gpu", "24G").output
    assert "bare G read as GB = 10^9" in text and "819,200 B/token" in text


def test_custom_architecture_and_meta_check():
    args = ["--layers", "32", "--hidden", "4096", "--heads", "32", "--kv-heads", "8", "--intermediate", "14336",
            "--vocab", "32000", "--max-positions", "32768"]
    d = json.loads(run(*args, "--json", "--meta-check").output)
    assert d["params"] == 7_241_732_096 == d["meta_check"]["parameters"]   # = Mistral-7B
    assert d["meta_check"]["agree"] is True


def test_plot_writes_png(tmp_path):
    out = tmp_path / "mem.png"
    r = run("--model", "llama-2-13b", "--gpu", "80GB", "--plot", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD = [
    (["--model", "lama-2-13b"], "did you mean 'llama-2-13b'"),
    (["--model", "llama-2-13b", "--gpu", "abc"], "not a size"),
    (["--model", "llama-2-13b", "--gpu", "-80GB"], "negative"),
    (["--model", "llama-2-13b", "--gpu", "80"], "write a unit"),
    (["--model", "llama-2-13b", "--batch", "-1"], "positive"),
    (["--model", "llama-2-13b", "--seq", "0"], "positive"),
    (["--params", "-7e9"], "positive"),
    (["--model", "llama-2-13b", "--params", "7e9"], "only one of"),
    (["--model", "llama-2-13b", "--layers", "4"], "only one of"),
    (["--params", "7e9", "--method", "lora"], "need an architecture"),
    (["--model", "llama-2-13b", "--inference", "--zero", "3"], "conflict with --inference"),
    (["--model", "llama-2-13b", "--lora-rank", "8"], "need --method lora"),
    (["--model", "llama-2-13b", "--zero", "5"], "0, 1, 2 or 3"),
    (["--model", "llama-2-13b", "--zero", "x"], "not a valid integer"),
    (["--model", "gpt2", "--method", "lora", "--lora-targets", "gate"], "does not exist"),
    (["--model", "gpt2", "--seq", "4096"], "1024"),
    (["--layers", "4", "--hidden", "64"], "needs --heads"),
    ([], "say which model"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_exit_2(args, needle):
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    assert needle in lines[0] and "Traceback" not in r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)


def test_one_line_errors_when_mounted_in_a_group():
    @click.group()
    def cli():
        pass

    cli.add_command(memory_command)
    r = CliRunner().invoke(cli, ["memory", "--model", "lama-2-13b"])
    assert r.exit_code == 2
    assert [ln for ln in r.output.splitlines() if ln.strip()] == [
        ln for ln in r.output.splitlines() if ln.startswith("Error:")]
