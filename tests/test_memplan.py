"""Memory planner: parameter counts, paper figures (ZeRO, vLLM, QLoRA, Korthikanti), units, meta device."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pytest's default rootdir handling does not put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

from debugsim.sim.memplan import (PRESETS, Strategy, get_preset, kv_cache_bytes_per_token, lora_params,  # noqa: E402
                         meta_param_count, parse_size, plan_memory, rank_strategies, UnknownModel)
from debugsim.sim.memplan.accounting import (korthikanti_layer_bytes, layer_activation_bytes,  # noqa: E402
                                    nf4_bytes_per_param, quant_constant_bits)
from debugsim.sim.memplan.strategies import OPTION_COSTS, strategy_cost  # noqa: E402
from debugsim.sim.memplan.units import SizeError, fmt_bytes, parse_count  # noqa: E402

GB, GiB = 10**9, 2**30

# Published parameter counts (HF model cards / safetensors metadata / PEFT printouts).
PUBLISHED = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "llama-65b": 65_285_660_672,
}


# ---- parameter counts --------------------------------------------------------
@pytest.mark.parametrize("name,count", sorted(PUBLISHED.items()))
def test_param_counts_match_published(name, count):
    assert get_preset(name).num_params == count


def test_opt_13b_param_count():
    # Derived from facebook/opt-13b config.json (learned positions have 2048 + 2 offset rows,
    # tied LM head, biases everywhere); the OPT paper reports it as 12.85B.
    n = get_preset("opt-13b").num_params
    assert n == 12_853_473_280
    assert round(n / 1e9, 2) == 12.85


def test_gqa_shrinks_kv_projections():
    l3 = get_preset("llama-3-8b")
    assert (l3.n_kv_heads, l3.kv_dim) == (8, 1024)
    assert l3.layer_params()["attention"] == 2 * 4096 * 4096 + 2 * 4096 * 1024


def test_aliases_and_did_you_mean():
    assert get_preset("Llama-2-13B").name == "llama-2-13b"
    assert get_preset("meta-llama/Llama-2-7b-hf").name == "llama-2-7b"
    assert get_preset("gpt2-small").name == "gpt2"
    with pytest.raises(UnknownModel) as e:
        get_preset("lama-2-13b")
    assert "llama-2-13b" in e.value.suggestions


def test_meta_device_agrees_with_analytic_count():
    for name, arch in PRESETS.items():
        m = meta_param_count(arch)
        assert m["parameters"] == arch.num_params, name
        if arch.tied_embeddings:  # the shared LM head would be counted twice without de-duplication
            assert m["parameters_with_duplicates"] - m["parameters"] == arch.vocab * arch.hidden
        if arch.positional == "rotary":  # inv_freq: a buffer, not a parameter
            assert m["buffers"] == arch.d_head // 2


def test_lora_params_match_peft_printout():
    # PEFT on Llama-2-7b, r=8, target q_proj,v_proj:
    # "trainable params: 4,194,304 || all params: 6,742,609,920"
    arch = get_preset("llama-2-7b")
    n = lora_params(arch, 8, "q_proj,v_proj")
    assert n == 4_194_304
    assert arch.num_params + n == 6_742_609_920
    # all-linear on a GQA model uses the narrower k/v shapes: r*(d_in+d_out) per matrix
    l3 = get_preset("llama-3-8b")
    assert lora_params(l3, 16, "all-linear") == 32 * 16 * (
        (4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)


# ---- ZeRO (Rajbhandari et al. 2019, Figure 1) ---------------------------------
def test_zero_paper_figure_1():
    psi, nd = 7.5e9, 64
    got = [plan_memory(psi, zero=z, gpus=nd).gpu_total for z in (0, 1, 2, 3)]
    assert got == [120 * GB, 31_406_250_000, 16_640_625_000, 1_875_000_000]
    assert [round(g / GB, 1) for g in got[:3]] + [round(got[3] / GB, 2)] == [120.0, 31.4, 16.6, 1.88]
    # 2Ψ + 2Ψ + KΨ with K = 12 (fp32 master 4 + Adam m 4 + v 4)
    states = plan_memory(psi).model_states
    assert states["weights"] == states["gradients"] == 2 * psi
    assert states["master_weights"] + states["optimizer_states"] == 12 * psi


def test_optimizer_bytes_per_param():
    p = 10**9
    assert plan_memory(p, precision="fp32", optimizer="adamw").gpu_total == 16 * p  # 4+4+8
    assert plan_memory(p, precision="fp32", optimizer="sgd").gpu_total == 12 * p    # 4+4+4
    assert plan_memory(p, optimizer="adam8bit").gpu_total == 10 * p               # 2+2+4+2
    assert plan_memory(p, optimizer="sgd").model_states["optimizer_states"] == 4 * p


def test_offload_moves_optimizer_and_master_to_cpu():
    plan = plan_memory(7.5e9, zero=2, gpus=8, offload=True)
    assert plan.gpu["optimizer_states"] == plan.gpu["master_weights"] == 0
    assert plan.cpu_total == 12 * 7.5e9 / 8
    assert plan.gpu_total == 2 * 7.5e9 + 2 * 7.5e9 / 8


# ---- vLLM (Kwon et al. 2023) --------------------------------------------------
def test_vllm_opt_13b_kv_cache():
    opt = get_preset("opt-13b")
    per_token = kv_cache_bytes_per_token(opt, 2)
    assert per_token == 2 * 5120 * 40 * 2 == 819_200 == 800 * 1024      # "800 KB per token"
    plan = plan_memory(opt, inference=True, seq=2048, batch=1)
    assert plan.gpu["kv_cache"] == 819_200 * 2048 == 1_677_721_600
    # The paper's "up to 1.6 GB" is 800 KiB x 2048 = 1,638,400 KiB, i.e. mixed units:
    # exactly 1.5625 GiB = 1.68 GB.
    assert plan.gpu["kv_cache"] / GiB == 1.5625
    assert fmt_bytes(plan.gpu["kv_cache"], "GB") == "1.68 GB"
    # per batch: linear in the number of sequences
    assert plan_memory(opt, inference=True, seq=2048, batch=8).gpu["kv_cache"] == 8 * 1_677_721_600


def test_gqa_kv_cache_is_smaller():
    assert kv_cache_bytes_per_token(get_preset("llama-2-7b")) == 2 * 32 * 4096 * 2      # 512 KiB
    assert kv_cache_bytes_per_token(get_preset("llama-3-8b")) == 2 * 32 * 1024 * 2      # 4x less (8 kv heads)


# ---- QLoRA (Dettmers et al. 2023) ----------------------------------------------
def test_qlora_quantisation_constants():
    assert quant_constant_bits(False) == 32 / 64 == 0.5
    assert quant_constant_bits(True) == pytest.approx(8 / 64 + 32 / (64 * 256))
    assert round(quant_constant_bits(True), 3) == 0.127
    saved = quant_constant_bits(False) - quant_constant_bits(True)
    assert round(saved, 3) == 0.373                                   # "0.373 bits per parameter"
    assert round(saved * 65e9 / 8 / GB, 2) == 3.03                    # "approximately 3 GB for a 65B model"
    assert nf4_bytes_per_param(True) == pytest.approx(0.5 + 0.127 / 8, abs=1e-4)


def test_qlora_65b_fits_48gb_and_full_needs_780gb():
    # Paper: ">780GB" for 16-bit fine-tuning of 65B = 2 (weights) + 2 (grads) + 8 (Adam) = 12 B/param,
    # i.e. without an fp32 master copy (16 B/param with one: 1040 GB).
    assert plan_memory(65e9, master_weights=False).gpu_total == 780 * GB
    assert plan_memory(65e9).gpu_total == 1040 * GB
    # QLoRA recipe: NF4 + double quant base, LoRA r=64 on all linear layers, bf16 adapters trained
    # without an fp32 copy, paged AdamW 32-bit states, gradient checkpointing, micro-batch 1 x 512.
    plan = plan_memory("llama-65b", method="qlora", lora_rank=64, lora_targets="all-linear",
                       master_weights=False, checkpointing=True, batch=1, seq=512)
    arch = plan.arch
    base_linear = arch.linear_params * nf4_bytes_per_param(True)
    assert round(base_linear / GB, 2) == 33.41                        # 4-bit block linears
    assert plan.trainable_params == 799_539_200
    assert round(plan.gpu_total / GB, 1) == 45.0
    assert plan.fits(48 * GB)
    # the same with an fp32 master copy of the adapters tips it over
    assert not plan_memory("llama-65b", method="qlora", lora_rank=64, lora_targets="all-linear",
                           checkpointing=True, batch=1, seq=512).fits(48 * GB)


def test_lora_freezes_base_without_states():
    full = plan_memory("llama-2-13b")
    lora = plan_memory("llama-2-13b", method="lora", lora_rank=16, lora_targets="q,v")
    assert lora.trainable_params == 40 * 2 * 16 * (5120 + 5120)
    assert lora.gpu["weights"] == full.gpu["weights"] + lora.trainable_params * 2
    assert lora.gpu["optimizer_states"] == lora.trainable_params * 8
    assert lora.gpu["activations"] == full.gpu["activations"]


# ---- activations (Korthikanti et al. 2022) --------------------------------------
@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl"])
@pytest.mark.parametrize("seq,batch", [(1024, 1), (512, 4)])
def test_activation_formula_reduces_to_korthikanti(name, seq, batch):
    a = get_preset(name)   # GPT-style: 4h GELU MLP, MHA, dropout -> sbh(34 + 5as/h)
    got = sum(layer_activation_bytes(a, seq, batch, 2, flash=False).values())
    assert got == korthikanti_layer_bytes(seq, batch, a.hidden, a.heads)
    assert got == seq * batch * a.hidden * (34 + 5 * a.heads * seq / a.hidden)
    flash = sum(layer_activation_bytes(a, seq, batch, 2, flash=True).values())
    assert flash == 34 * seq * batch * a.hidden                       # flash drops the 5as/h term


def test_checkpointing_keeps_layer_inputs_only():
    a, s, b = get_preset("llama-2-13b"), 4096, 2
    plain = plan_memory(a, seq=s, batch=b, flash=False)
    ckpt = plan_memory(a, seq=s, batch=b, flash=False, checkpointing=True)
    layer = sum(layer_activation_bytes(a, s, b, 2, flash=False).values())
    out_layer = 2 * 2 * s * b * a.hidden
    assert plain.gpu["activations"] == a.layers * layer + out_layer
    assert ckpt.gpu["activations"] == a.layers * 2 * s * b * a.hidden + layer + out_layer
    assert plain.gpu["logits"] == 4 * s * b * a.vocab
    assert plan_memory(a, seq=s, batch=b).gpu["activations"] < plain.gpu["activations"]   # flash


# ---- ranking -------------------------------------------------------------------
def test_cost_order_is_documented_order():
    c = {k: v[0] for k, v in OPTION_COSTS.items()}
    assert c["flash"] < c["ckpt"] < c["zero1"] <= c["zero2"] < c["zero3"] < c["offload"] < c["adam8bit"] \
        < c["lora"] < c["qlora"]


def test_rank_llama_2_13b_on_one_80gb_gpu():
    ranked = rank_strategies("llama-2-13b", 80 * GB)
    assert [r.label for r in ranked] == ["full+offload", "lora"]
    assert all(r.plan.fits(80 * GB) for r in ranked)
    assert [r.cost for r in ranked] == sorted(r.cost for r in ranked)
    assert strategy_cost(Strategy(method="qlora", checkpointing=True)) == 14


def test_rank_with_8_gpus_prefers_sharding():
    ranked = rank_strategies("llama-2-13b", 80 * GB, gpus=8)
    assert ranked[0].label == "full+zero2"
    assert rank_strategies("llama-2-70b", 1 * GB) == []


# ---- units ---------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("80GB", 80 * GB), ("80GiB", 80 * GiB), ("24G", 24 * GB), ("40 GB", 40 * GB), ("1024", 1024),
    ("1.5TB", 1_500_000_000_000), ("512MiB", 512 * 2**20), ("80gib", 80 * GiB), ("2e9", 2 * GB),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["abc", "-1GB", "80XB", "", "GB", "nan"])
def test_parse_size_rejects(bad):
    with pytest.raises(SizeError):
        parse_size(bad)


def test_parse_count_and_format():
    assert parse_count("7.5e9") == 7_500_000_000 and parse_count("13B") == 13 * 10**9
    assert fmt_bytes(80 * GiB, "GB") == "85.90 GB" and fmt_bytes(80 * GiB, "GiB") == "80.00 GiB"


def test_strategy_validation():
    with pytest.raises(ValueError):
        Strategy(zero=4)
    with pytest.raises(ValueError):
        Strategy(inference=True, zero=3)
    with pytest.raises(ValueError):
        plan_memory(7e9, method="lora")


def test_import_does_not_load_torch_or_matplotlib():
    code = ("import sys, debugsim.sim.memplan, debugsim.sim.memplan.command; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
