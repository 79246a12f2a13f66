"""SGLang 0.4.4-0.4.9 with a vision-language model (vramest/inference/engines/
sglang_multimodal.py) against the out-of-memory sgl-project/sglang issue #6082 logged."""

from __future__ import annotations

import pytest

import vramest
from vramest.inference.engines.sglang import version, version_text
from vramest.inference.engines.sglang_multimodal import largest_pixels_bytes

GIB = 1024**3


def _qwen25_vl_72b_awq_on_4x4090(**options: object):
    # sgl-project/sglang issue #6082: "qwen2.5vl-72B-awq (the official version) on an RTX 4090
    # using sglang - 0.4.6-post1 with a 4-GPU setup ... the VRAM usage on GPU 0 continuously
    # increases and eventually leads to an OOM"
    return vramest.estimate(model="Qwen/Qwen2.5-VL-72B-Instruct", dtype="awq-int4",
                            gpu="rtx 4090", num_gpus=4, engine="sglang",
                            engine_options={"version": "0.4.6.post1", **options},
                            profile="none")


def test_gpu0_pictures_run_out_of_memory_as_issue_6082_logged() -> None:
    # "CUDA out of memory. Tried to allocate 38.00 MiB. GPU 0 has a total capacity of 23.65 GiB
    # of which 39.44 MiB is free. Process 20909 has 1.81 GiB memory in use. Process 21069 has
    # 1.87 GiB ... Process 21071 has 1.87 GiB ... Process 21068 has 16.12 GiB ... Process 21070
    # has 1.91 GiB": four processes beside TP rank 0 on GPU 0, the tokenizer manager and
    # ranks 1-3, each holding at least a CUDA context and the pictures
    est = _qwen25_vl_72b_awq_on_4x4090()
    report = est.engine_report
    assert report.starts  # it started and served requests first
    assert report.mem_fraction_static == pytest.approx(0.85 * 0.90)
    assert report.chunked_prefill_size == -1
    assert est.fit is not None and not est.fit.fits
    assert report.runtime_headroom_bytes < 0
    per_process = report.gpu0_extra_bytes / 4
    assert 0.5 * GIB < per_process < 1.91 * GIB  # no more than the log's largest
    assert any("tokenizer manager and TP ranks 1-3" in rule for rule in report.rules)


def test_the_logged_workaround_keeps_gpu0_free() -> None:
    # the thread's answer: "try `--disable-fast-image-processor` ... to offload image
    # preprocessing to CPU, preventing pixel value tensors taking up all VRAM in GPU0"
    est = _qwen25_vl_72b_awq_on_4x4090(disable_fast_image_processor=True)
    assert est.engine_report.gpu0_extra_bytes == 0
    assert est.engine_report.runtime_headroom_bytes > 0
    assert est.fit is not None and est.fit.fits


def test_from_post3_only_the_tokenizer_manager_is_on_gpu0() -> None:
    # v0.4.6.post3 moves the pixel values to the CPU before they leave the tokenizer manager
    before = _qwen25_vl_72b_awq_on_4x4090().engine_report
    after = _qwen25_vl_72b_awq_on_4x4090(version="0.4.6.post3").engine_report
    assert after.gpu0_extra_bytes < before.gpu0_extra_bytes / 3
    assert after.mem_fraction_static == before.mem_fraction_static


def test_a_text_model_keeps_its_share_and_chunks() -> None:
    est = vramest.estimate(model="Qwen/Qwen2.5-72B-Instruct", dtype="awq-int4", gpu="rtx 4090",
                           num_gpus=4, engine="sglang",
                           engine_options={"version": "0.4.6.post1"}, profile="none")
    assert est.engine_report.mem_fraction_static == 0.85
    assert est.engine_report.chunked_prefill_size == 2048
    assert est.engine_report.gpu0_extra_bytes == 0


def test_largest_qwen_vl_picture_is_max_pixels_in_float32() -> None:
    # qwen_vl.py MAX_PIXELS = 16384 * 28 * 28: 65536 patches of 2 x 3 x 14 x 14 float32 values
    config = {"architectures": ["Qwen2_5_VLForConditionalGeneration"]}
    assert largest_pixels_bytes(config) == 65536 * 1176 * 4


def test_post_releases_keep_their_number() -> None:
    assert version("0.4.6.post1", "version") == (0, 4, 6, 1)
    assert version("v0.4.6", "version") == (0, 4, 6)
    assert version_text((0, 4, 6, 1)) == "0.4.6.post1"
    assert (0, 4, 6) < version("0.4.6.post1", "version") < (0, 4, 6, 3) < (0, 4, 7)
