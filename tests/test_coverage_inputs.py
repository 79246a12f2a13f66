"""Real user inputs that must be expressible (issue 18, items 6 and 7): hub ids of same-shape
releases, engines named by their users' names, the GPUs of public reports."""

from __future__ import annotations

import pytest

import vramest
from vramest.errors import InputError
from vramest.hardware.database import default_hardware
from vramest.inference.engines.aliases import resolve_engine
from vramest.model.catalog import default_catalog
from vramest.model.names import catalog_match

CATALOG = default_catalog()


@pytest.mark.parametrize(("name", "entry"), [
    ("Qwen/Qwen1.5-14B-Chat", "Qwen/Qwen1.5-14B"),
    ("deepseek-ai/deepseek-coder-6.7b-instruct", "deepseek-ai/deepseek-coder-6.7b-base"),
    ("zai-org/GLM-4-32B-0414", "THUDM/GLM-4-32B-0414"),
])
def test_names_of_the_real_cases_find_their_entry(name: str, entry: str) -> None:
    found = CATALOG.get(name) or getattr(catalog_match(name), "entry", None)
    assert found is not None and found.id == entry


# ik_llama.cpp PR #333 (GLM-Z1-Rumination-32B-0414, the GLM-4-0414 32B architecture):
# "model params = 33.142 B"; and an RTX A6000 log of GLM-4-32B-0414 at n_ctx 8192:
# "CUDA0 KV buffer size = 1952.00 MiB".
def test_glm4_0414_count_and_kv_match_llama_cpp_logs() -> None:
    entry = CATALOG.find("THUDM/GLM-4-32B-0414")
    assert abs(entry.shape().param_count() / 33.142e9 - 1) < 0.001
    est = vramest.estimate(model="THUDM/GLM-4-32B-0414", ctx=8192, dtype="q4_k_m",
                           gpu="rtx a6000", engine="llamacpp", profile="none")
    assert est.engine_report is not None
    assert est.engine_report.kv_cache_bytes == 1952 * 2**20


def test_qwen25_vl_72b_is_the_72b_decoder_and_a_vision_tower() -> None:
    entry = CATALOG.find("Qwen/Qwen2.5-VL-72B-Instruct")
    text = CATALOG.find("Qwen/Qwen2.5-72B").shape()
    shape = entry.shape()
    assert shape.param_count() == entry.published_params  # the tower is the remainder
    tower = shape.param_count() - text.param_count()
    assert 0.5e9 < tower < 0.8e9  # a 32-layer, 1280-wide ViT with its merger: about 0.67B


def test_unknown_size_of_a_known_family_suggests_the_nearest_entry() -> None:
    with pytest.raises(InputError, match=r"Qwen/Qwen1\.5-14B"):
        CATALOG.find("Qwen/Qwen1.5-13B-Chat")
    with pytest.raises(InputError, match=r"THUDM/GLM-4-32B-0414"):
        CATALOG.find("THUDM/GLM-4-30B-0414")


@pytest.mark.parametrize(("name", "engine"), [
    ("exllama", "exllamav2"), ("aphrodite", "vllm"), ("llamafile", "llamacpp"),
    ("ik_llama.cpp", "llamacpp"), ("vllm", "vllm"), ("Ollama", "ollama"),
])
def test_engine_names_users_give(name: str, engine: str) -> None:
    assert resolve_engine(name)[0] == engine


def test_aphrodite_names_the_vllm_release_whose_rules_it_gets() -> None:
    est = vramest.estimate(model="mistral-7b", gpu="rtx 4090", engine="aphrodite",
                           profile="none")
    assert est.engine_report is not None
    assert est.engine_report.to_json()["version"] == "vllm==0.3.3"
    assert any("Aphrodite" in a for a in est.assumptions)


def test_vllm_metal_is_refused_in_one_sentence() -> None:
    with pytest.raises(InputError, match="not modelled"):
        vramest.estimate(model="mistral-7b", gpu="m4", engine="vllm-metal")


@pytest.mark.parametrize(("name", "gib", "gbs"), [
    ("nvidia a2", 16, 200), ("rtx 5090 d", 32, 1792), ("quadro p2000", 5, 140),
])
def test_gpus_of_public_reports_are_known(name: str, gib: int, gbs: int) -> None:
    device = default_hardware().find(name)
    assert device.memory_bytes == gib * 2**30
    assert device.bandwidth_bytes_s == gbs * 1e9


def test_nvidia_a2_keeps_ecc_in_band_like_the_t4() -> None:
    a2, t4 = default_hardware().find("a2"), default_hardware().find("t4")
    assert a2.addressable_bytes == t4.addressable_bytes < a2.memory_bytes


# --- different GPUs in one machine (llama.cpp's layer split) -------------------------------
def _mixed(gpu: str, ctx: int = 8192, **kw: object) -> vramest.Estimate:
    return vramest.estimate(model="qwen2.5-32b", dtype="q8_0", ctx=ctx, gpu=gpu,
                            engine="llamacpp", profile="none", **kw)  # type: ignore[arg-type]


def test_two_of_the_same_gpu_listed_equal_num_gpus_two() -> None:
    listed, counted = _mixed("rtx 3090,rtx 3090"), _mixed("rtx 3090", num_gpus=2)
    assert listed.engine_report is not None and counted.engine_report is not None
    assert listed.engine_report.to_json()["devices"] == counted.engine_report.to_json()["devices"]
    assert listed.fit is not None and counted.fit is not None
    assert listed.fit.per_gpu.total == counted.fit.per_gpu.total
    assert listed.fit.verdict == counted.fit.verdict


def test_layers_follow_each_gpus_free_memory_and_the_fullest_is_judged() -> None:
    est = _mixed("RTX 5090 D + RTX 5070 Ti")
    assert est.engine_report is not None and est.fit is not None
    devices = est.engine_report.to_json()["devices"]
    big, small = devices[0]["layers"], devices[1]["layers"]
    assert big + small == 64  # every layer of Qwen2.5-32B on one GPU or the other
    assert 1.8 < big / small < 2.4  # 32 GB against 16 GB of free memory
    assert "RTX 5070 Ti" in est.fit.device.name  # the smaller card has the least headroom
    assert est.fit.num_gpus == 2


def test_a_pair_that_only_fits_in_total_does_not_fit() -> None:
    # 2x 24 GB-class memory in total, but -ts 1,1 puts half the layers on the 8 GB card
    est = _mixed("rtx 3090,rtx 4060", engine_options={"tensor_split": "1,1"})
    assert est.fit is not None and not est.fit.fits
    assert "RTX 4060" in est.fit.device.name


def test_mixed_gpus_for_an_engine_without_a_layer_split_is_refused() -> None:
    with pytest.raises(InputError, match=r"llama\.cpp's and Ollama's layer split"):
        vramest.estimate(model="qwen2.5-32b", gpu="rtx 5090 d,rtx 5070 ti", engine="tgi")
    with pytest.raises(InputError, match="does not match"):
        _mixed("rtx 3090,rtx 3060 12gb", num_gpus=3)
    with pytest.raises(InputError, match="Unknown GPU"):
        _mixed("rtx 3090,rtx 9999")


# --- the instruction-tuned releases users name --------------------------------------------
@pytest.mark.parametrize(("release", "base"), [
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"),
    ("Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B"),
    ("mistralai/Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-v0.1"),
])
def test_instruct_releases_have_their_base_models_tensors(release: str, base: str) -> None:
    r, b = CATALOG.find(release).shape(), CATALOG.find(base).shape()
    assert r.param_count() == b.param_count()


def test_qwen25_instruct_declares_32k_positions() -> None:
    # vLLM's default max_model_len is the config's: 32768 for the instruct releases
    assert CATALOG.find("Qwen/Qwen2.5-7B-Instruct").shape().max_context == 32768
    assert CATALOG.find("Qwen/Qwen2.5-7B").shape().max_context == 131072


def test_mistral_v02_attends_over_the_whole_context() -> None:
    v01 = vramest.estimate(model="mistralai/Mistral-7B-Instruct-v0.1", ctx=32768)
    v02 = vramest.estimate(model="mistralai/Mistral-7B-Instruct-v0.2", ctx=32768)
    assert v02.memory.kv_cache.bytes == 8 * v01.memory.kv_cache.bytes  # 4096-token window


def test_the_advised_layers_fit_every_gpu_of_a_mixed_pair() -> None:
    est = _mixed("rtx 3090,rtx 4060", ctx=4096)
    assert est.fit is not None and not est.fit.fits
    advice = next(a for a in est.fit.advice if a.startswith("-ngl "))
    layers = int(advice.split()[1].rstrip(":"))
    again = _mixed("rtx 3090,rtx 4060", ctx=4096, engine_options={"n_gpu_layers": layers})
    assert again.fit is not None and again.fit.verdict == "fits"
    worse = _mixed("rtx 3090,rtx 4060", ctx=4096, engine_options={"n_gpu_layers": layers + 2})
    assert worse.fit is not None and worse.fit.verdict != "fits"
