"""vLLM V1's multimodal start-up profile (vramest/inference/engines/vllm_multimodal.py) against
the figures vLLM logged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.api import estimate
from vramest.errors import InputError


def _vllm(model: str, gpu: str, num_gpus: int = 1, **options: object):
    est = estimate(model=model, gpu=gpu, num_gpus=num_gpus, engine="vllm",
                   engine_options=options, profile="none")
    return est.engine_report


def _profile_note(report) -> str:
    return next((n for n in report.notes if n.startswith("Multimodal profile")), "")


def test_qwen25_vl_image_budget_and_kv_as_logged():
    # QwenLM/Qwen3-VL issue #1057: Qwen2.5-VL-7B, vLLM 0.8.2 through vllm.LLM on an H100 at
    # max_model_len 128000, with the README's limit_mm_per_prompt={"image": 10, "video": 10}:
    # "Encoder cache will be initialized with a budget of 16384 tokens, and profiled with 1
    # image items ... GPU KV cache size: 905,648 tokens"
    r = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.8.2", max_model_len=128000,
              entrypoint="llm", limit_mm_per_prompt=10)
    assert "budget 16,384 tokens, profiled with 1 image item(s)" in _profile_note(r)
    assert r.kv_cache_tokens == pytest.approx(905_648, rel=0.03)


def test_qwen25_vl_profiles_the_longest_video_that_fits():
    # the same model served with one item of each: max_model_len 128000 less one image's
    # 16384 tokens holds 12 frames (6 groups of 2 x 16384 tokens), under the 16-frame cap
    # (qwen2_vl.py get_num_frames_with_most_features @v0.8.2)
    r = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.8.2", max_model_len=128000)
    assert "budget 98,304 tokens, profiled with 1 video item(s)" in _profile_note(r)
    # a short length leaves room for no more than one frame: the image wins the tie
    r = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.8.2", max_model_len=32768)
    assert "profiled with 1 image item(s)" in _profile_note(r)


def test_qwen3_vl_profiles_one_video_of_153600_tokens_on_0_11():
    # vLLM issue #29743 (Qwen3-VL on vLLM 0.11/0.12): "Encoder cache will be initialized with a
    # budget of 153600 tokens, and profiled with 1 video items of the maximum feature size."
    r = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, version="0.11.0",
              max_model_len=128000)
    assert "budget 153,600 tokens, profiled with 1 video item(s)" in _profile_note(r)


def test_smaller_pictures_are_profiled_several_at_a_time():
    # a processor capped at 1280 tokens a picture (--mm-processor-kwargs max_pixels 28*28*1280)
    # with 100 images allowed per prompt leaves no length for a second video frame on 0.8.2,
    # so the image is profiled: cdiv(8192, 1280) = 7 of them on an H100 (2048 / 1280 -> 2 on an
    # A100, the pattern of vLLM issue #16570's "budget of 2048 tokens, ... 2 image items")
    r = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.8.2", max_model_len=32768,
              mm_max_pixels=28 * 28 * 1280, limit_mm_per_prompt=100)
    assert "budget 8,192 tokens, profiled with 7 image item(s)" in _profile_note(r)
    # 0.11 counts the video against the whole length, at most 14 frames: 7 x 1280 tokens
    r = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.11.0", max_model_len=32768,
              mm_max_pixels=28 * 28 * 1280)
    assert "budget 8,960 tokens, profiled with 1 video item(s)" in _profile_note(r)


def test_llama32_vision_v0_profile_as_logged():
    # vLLM PR #12126 (H100, 0.6.6 dev): "vllm serve meta-llama/Llama-3.2-11B-Vision
    # --max-model-len 65536 --max-num-seqs 128 --enforce-eager ... PyTorch activation peak
    # memory takes 36.63GiB; the rest of the memory reserved for KV Cache is 14.65GiB"
    r = _vllm("meta-llama/Llama-3.2-11B-Vision", "h100", version="0.6.6", max_model_len=65536,
              max_num_seqs=128, enforce_eager=True)
    assert r.activation_peak_bytes == pytest.approx(36.63 * 2**30, rel=0.02)
    assert r.kv_cache_bytes == pytest.approx(14.65 * 2**30, rel=0.08)
    assert "128 dummy sequences" in " ".join(r.notes)


def test_llama32_vision_v0_profile_runs_every_sequence_picture():
    # vLLM issue #9445 (0.6.3, A100 80GB, --max-model-len 1024): out of memory at the default
    # 256 sequences, started with max_num_seqs 32 and eager mode
    base = dict(version="0.6.3", max_model_len=1024)
    assert not _vllm("meta-llama/Llama-3.2-11B-Vision-Instruct", "a100 sxm4 80gb",
                     **base).starts
    assert _vllm("meta-llama/Llama-3.2-11B-Vision-Instruct", "a100 sxm4 80gb", **base,
                 max_num_seqs=32, enforce_eager=True).starts


@pytest.mark.parametrize("off", [{"limit_mm_per_prompt": 0}, {"skip_mm_profiling": True}])
def test_the_profile_can_be_turned_off(off):
    base = dict(version="0.11.0", max_model_len=128000)
    on = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, **base)
    without = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, **base, **off)
    assert not _profile_note(without)
    # the encoder cache (153600 x 4 x 4096 bf16 = 4.69 GiB) comes back to the KV cache
    assert on.kv_cache_bytes + 4.6 * 2**30 < without.kv_cache_bytes


def test_v0_and_text_models_have_no_encoder_profile():
    assert not _profile_note(_vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.7.3"))
    assert not _profile_note(_vllm("Qwen/Qwen2.5-7B-Instruct", "h100", version="0.11.0"))


def test_the_encoder_cache_never_shrinks_the_kv_cache_more_than_it_holds():
    # the cache is kept beside the text profile's peak; it adds at most its own bytes
    a = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.11.0", max_model_len=32768)
    b = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.11.0", max_model_len=32768,
              skip_mm_profiling=True)
    assert 0 < b.kv_cache_bytes - a.kv_cache_bytes <= 2.5 * 2**30


@pytest.mark.parametrize("spelled", ['{"image": 2, "video": 0}', "image=2,video=0",
                                     {"image": 2, "video": 0}])
def test_limit_mm_per_prompt_as_vllm_spells_it(spelled):
    # video off: Qwen3-VL on 0.11 profiles its 16384-token image instead of the video
    r = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, version="0.11.0",
              max_model_len=128000, limit_mm_per_prompt=spelled)
    assert "profiled with 1 image item(s) of 16,384 tokens" in _profile_note(r)


def test_bad_options_are_refused_plainly():
    with pytest.raises(InputError):  # not in vLLM before 0.10.1
        _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", version="0.8.2", skip_mm_profiling=True)
    with pytest.raises(InputError):
        _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", entrypoint="notebook")
    with pytest.raises(InputError):
        _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", limit_mm_per_prompt=-3)
    with pytest.raises(InputError):
        _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", limit_mm_per_prompt="image=x")
    with pytest.raises(InputError):
        _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", mm_max_pixels='{"min_pixels": 3}')


def test_a_config_file_gets_the_same_profile_as_the_catalog_entry(tmp_path):
    import json

    from vramest.model.catalog import default_catalog

    config = dict(default_catalog().get("Qwen/Qwen2.5-VL-7B-Instruct").config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    options = dict(version="0.11.0", max_model_len=32768)
    from_file = _vllm(str(tmp_path / "config.json"), "h100", **options)
    from_catalog = _vllm("Qwen/Qwen2.5-VL-7B-Instruct", "h100", **options)
    assert _profile_note(from_file) == _profile_note(from_catalog) != ""


def test_an_unmodelled_vision_encoder_is_said_so():
    # Llama 3.2 Vision on V1: its tiles reach cross-attention, not modelled on V1
    model = "meta-llama/Llama-3.2-11B-Vision-Instruct"
    notes = " ".join(_vllm(model, "h100", version="0.11.0").notes)
    assert "vision encoder at start-up, which is not modelled" in notes
    off = _vllm(model, "h100", version="0.11.0", limit_mm_per_prompt=0)
    assert "not modelled" not in " ".join(off.notes)


def test_qwen3_vl_profile_follows_the_release():
    # 0.12.0 still counts the video x 12.5 (caching it at the item's 153600 tokens); 0.13.0
    # counts its 12288 soft tokens, so the 16384-token image is profiled (qwen3_vl.py)
    base = dict(max_model_len=128000)
    v12 = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, version="0.12.0", **base)
    v13 = _vllm("Qwen/Qwen3-VL-235B-A22B-Instruct", "a100-80gb", 8, version="0.13.0", **base)
    assert "1 video item(s) of 153,600 tokens" in _profile_note(v12)
    assert "1 image item(s) of 16,384 tokens" in _profile_note(v13)
    assert v13.kv_cache_bytes > v12.kv_cache_bytes + 4 * 2**30


# Towers that take vLLM's largest dummy picture at one size (vllm_multimodal._fixed_item)
_FIXED = ["google/gemma-3-27b-it", "google/gemma-3-4b-it", "llava-hf/llava-1.5-7b-hf",
          "OpenGVLab/InternVL3-8B-hf", "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
          "mistral-community/pixtral-12b", "meta-llama/Llama-4-Scout-17B-16E-Instruct"]


def test_mistral_small_31_profile_as_logged():
    # vLLM issue #16292 (vLLM 0.8.3, Mistral-Small-3.1-24B-Instruct-2503, --limit_mm_per_prompt
    # 'image=10' --max-model-len 65536): "Encoder cache will be initialized with a budget of
    # 8192 tokens, and profiled with 3 image items of the maximum feature size." The 1540 px
    # picture is 55 x 55 merged patches, cdiv(8192, 3025) = 3 (an 8192-token budget: a GPU
    # of H100 class, assumed)
    r = _vllm("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "h100", version="0.8.3",
              max_model_len=65536, limit_mm_per_prompt="image=10")
    assert "budget 8,192 tokens, profiled with 3 image item(s) of 3,025 tokens" in \
        _profile_note(r)


@pytest.mark.parametrize("model", _FIXED)
@pytest.mark.parametrize("version", ["0.8.2", "0.10.1", "0.11.0", "0.12.0", "0.14.0"])
def test_limit_zero_removes_the_encoder_profile(model, version):
    if model.startswith("meta-llama/Llama-4") and version == "0.8.2":
        pytest.skip("Llama 4 came in vLLM 0.8.3")
    gpus = 8 if "Llama-4" in model else 1
    on = _vllm(model, "h100", gpus, version=version, max_model_len=32768)
    off = _vllm(model, "h100", gpus, version=version, max_model_len=32768,
                limit_mm_per_prompt=0)
    assert _profile_note(on) and not _profile_note(off)
    assert not any("not modelled" in n for n in on.notes)
    assert off.kv_cache_bytes > on.kv_cache_bytes


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(_FIXED[:5]),
       version=st.sampled_from(["0.8.2", "0.9.2", "0.10.0", "0.10.1", "0.11.0", "0.13.0"]),
       fewer=st.integers(1, 40), extra=st.integers(0, 60),
       length=st.sampled_from([4096, 32768, 131072]))
def test_more_images_per_prompt_never_give_more_kv(model, version, fewer, extra, length):
    base = dict(version=version, max_model_len=length)
    few = _vllm(model, "h100", **base, limit_mm_per_prompt=fewer)
    many = _vllm(model, "h100", **base, limit_mm_per_prompt=fewer + extra)
    assert many.kv_cache_bytes <= few.kv_cache_bytes


def test_gemma3_fills_the_budget_with_256_token_pictures():
    # gemma3_mm.py @v0.11.0: 256 soft tokens a picture with pan-and-scan off, so an H100's
    # 8192-token budget holds 32 of them, each 4096 SigLIP patches (896 / 14 squared)
    r = _vllm("google/gemma-3-27b-it", "h100", version="0.11.0", max_model_len=32768)
    assert "profiled with 32 image item(s) of 256 tokens (4,096 patches each)" in \
        _profile_note(r)
    # one picture per prompt and 8 sequences: 8 pictures
    r = _vllm("google/gemma-3-27b-it", "h100", version="0.11.0", max_model_len=32768,
              limit_mm_per_prompt=1, max_num_seqs=8)
    assert "profiled with 8 image item(s)" in _profile_note(r)


def test_0_11_pads_every_cached_picture_to_the_budget():
    # gpu_model_runner.py @v0.11.0 copies each 256-row output into a zeroed (8192, 5376)
    # tensor: 32 x 8192 x 5376 x 2 B = 2.62 GiB more than 0.10.1 or 0.13.0 keep
    base = dict(max_model_len=32768)
    v10 = _vllm("google/gemma-3-27b-it", "h100", version="0.10.1", **base)
    v11 = _vllm("google/gemma-3-27b-it", "h100", version="0.11.0", **base)
    v13 = _vllm("google/gemma-3-27b-it", "h100", version="0.13.0", **base)
    padded = 32 * (8192 - 256) * 5376 * 2
    assert v10.kv_cache_bytes - v11.kv_cache_bytes == pytest.approx(padded, rel=0.01)
    assert v13.kv_cache_bytes == pytest.approx(v10.kv_cache_bytes, rel=0.001)


def test_internvl_and_llama4_profile_their_tiles():
    # InternVL: 12 tiles + the thumbnail, 256 tokens each (internvl.py @v0.11.0); 8192 // 3328
    r = _vllm("OpenGVLab/InternVL3-8B-hf", "h100", version="0.11.0")
    assert "profiled with 2 image item(s) of 3,328 tokens (13,325 patches each)" in \
        _profile_note(r)
    # Llama 4: 16 tiles + the global one, 144 tokens each (mllama4.py @v0.11.0)
    r = _vllm("meta-llama/Llama-4-Scout-17B-16E-Instruct", "h100", 8, version="0.11.0")
    assert "profiled with 3 image item(s) of 2,448 tokens" in _profile_note(r)


def test_llava_next_profiles_its_largest_pinpoint():
    # llava-hf/llava-v1.6-mistral-7b-hf config.json: image_grid_pinpoints [[336, 672],
    # [672, 336], [672, 672], [1008, 336], [336, 1008]] of a 336 px CLIP. 672 x 672 is the
    # largest: 48 x 48 unpadded + 48 newlines + 576 base = 2928 tokens (llava_next.py
    # _get_num_unpadded_features @v0.11.0), 4 tiles + the base picture through the tower
    from vramest.inference.engines.versions import parse_version, vllm_rules
    from vramest.inference.engines.vllm_multimodal import encoder_profile
    from vramest.model.catalog import default_catalog

    llava = dict(default_catalog().get("llava-hf/llava-1.5-7b-hf").config)
    config = {**llava, "model_type": "llava_next", "image_grid_pinpoints": [
        [336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]}
    version = parse_version("vllm", "0.11.0")
    profile = encoder_profile(config, vllm_rules(version), version.release, text_hidden=4096,
                              max_model_len=32768, batched_tokens=8192, max_num_seqs=1024,
                              tp=1, act_bytes=2)
    assert profile is not None
    assert (profile.tokens_per_item, profile.items, profile.patches_per_item) == \
        (2928, 2, 5 * 577)
