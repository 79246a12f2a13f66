"""SGLang with a vision-language model, v0.4.4 to v0.4.9: what it keeps back for the pictures.

Read at sgl-project/sglang releases 0.4.4, 0.4.5, 0.4.5.post1, 0.4.5.post3, 0.4.6,
0.4.6.post1-post5, 0.4.7, 0.4.8 and 0.4.9 (their wheels' python/sglang/srt):
1. model_runner.py model_specific_adjustment lowers mem_fraction_static for a multimodal model
   ("Automatically reduce --mem-fraction-static to ... because this is a multimodal model"):
   x 0.95 at 0.4.4, x 0.90 from 0.4.5 to 0.4.8, on the given share as on the default; at 0.4.9
   server_args.py __post_init__ does it, x 0.90 of the default only. From 0.4.10 a formula
   by the ViT's size (adjust_mem_fraction_for_vlm) replaces it, not modelled here.
2. From 0.4.5 to 0.4.6.post5 the same function turns chunked prefill off for every multimodal
   model ("Automatically turn off --chunked-prefill-size for multimodal model"): a prompt is
   prefilled whole, so the reserved share holds the whole request's activations.
3. From 0.4.5.post1 the tokenizer manager (the server's main process, on cuda:0 as it never
   picks a device) runs the fast image processor with device "cuda"
   (multimodal_processors/base_processor.py process_mm_data), which gives it a CUDA context
   on GPU 0 and the pictures' pixel values there. Until 0.4.6.post3 moved them to the CPU
   ("result['pixel_values'].to('cpu')") they stay on cuda:0 and travel pickled to the
   scheduler (zmq send_pyobj) and from TP rank 0 to the others (utils.py broadcast_pyobj):
   torch restores a pickled CUDA tensor on the device it was saved from, so every other rank
   opens a CUDA context on GPU 0 too and keeps a copy of each request's pixels there. All of
   it comes after TP rank 0 sized its KV pool from GPU 0's free memory, so it takes from the
   reserved share ("GPU 0 has a total capacity of 23.65 GiB of which 39.44 MiB is free.
   Process 20909 has 1.81 GiB memory in use. Process 21069 has 1.87 GiB ... Process 21071
   has 1.87 GiB ... Process 21068 has 16.12 GiB ... Process 21070 has 1.91 GiB": Qwen2.5-VL
   72B AWQ at TP 4 on RTX 4090s, sglang 0.4.6.post1, sgl-project/sglang issue #6082;
   `--disable-fast-image-processor` keeps the processing on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING, frozen
from vramest.units import format_bytes

if TYPE_CHECKING:
    from typing import Any

# configs/model_config.py multimodal_model_archs @v0.4.6.post1 (is_multimodal_model)
MULTIMODAL_ARCHS = ("DeepseekVL2ForCausalLM", "Gemma3ForConditionalGeneration",
                    "Grok1VForCausalLM", "Grok1AForCausalLM", "LlavaLlamaForCausalLM",
                    "Llama4ForConditionalGeneration", "LlavaMistralForCausalLM",
                    "LlavaQwenForCausalLM", "LlavaVidForCausalLM", "MiniCPMO", "MiniCPMV",
                    "MultiModalityCausalLM", "MllamaForConditionalGeneration",
                    "Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")
# (first release, factor, on a given share too): model_runner.py @v0.4.4 (x 0.95), @v0.4.5 to
# v0.4.8 (x 0.90); server_args.py @v0.4.9 (x 0.90, default share only)
SHARE_FACTORS = (((0, 4, 4), 0.95, True), ((0, 4, 5), 0.90, True), ((0, 4, 9), 0.90, False))
MODELLED_UNTIL = (0, 4, 10)  # adjust_mem_fraction_for_vlm from here
# chunked prefill off for every multimodal model: model_runner.py @v0.4.5 to v0.4.6.post5;
# from v0.4.7 only where the model lacks multimodal chunked prefill
UNCHUNKED = ((0, 4, 5), (0, 4, 7))
# the tokenizer manager's image processing on cuda:0 (base_processor.py kwargs["device"] =
# "cuda", first in v0.4.5.post1), its pixel values left there until v0.4.6.post3
GPU_PROCESSING_SINCE = (0, 4, 5, 1)
PIXELS_TO_CPU_SINCE = (0, 4, 6, 3)
# managers/multimodal_processors/qwen_vl.py Qwen2_5VLImageProcessor @v0.4.6.post1: pictures are
# resized to at most MAX_PIXELS = 16384 * 28 * 28; the fast processor's pixel values are
# float32, temporal_patch_size (2) x 3 channels x patch_size^2 (14 x 14) per 14 px patch
QWEN_VL_MAX_PIXELS = 16384 * 28 * 28
QWEN_VL_PATCH = 14
QWEN_VL_VALUES_PER_PATCH = 2 * 3 * 14 * 14
PIXEL_BYTES = 4
QWEN_VL_ARCHS = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")


@frozen
class VisionRules:
    """What a multimodal model changes in SGLang's split at this release."""

    share: float  # mem_fraction_static after the multimodal reduction
    unchunked: bool  # chunked prefill off: a prompt is one forward
    gpu0_processes: int  # other processes with a CUDA context and the pictures on GPU 0
    gpu0_bytes: int  # what they hold there, all together
    notes: tuple[str, ...]


def is_multimodal(config: Mapping[str, Any]) -> bool:
    """SGLang's is_multimodal_model: the config's architectures against its list."""
    archs = config.get("architectures") or ()
    return any(arch in MULTIMODAL_ARCHS for arch in archs)


def largest_pixels_bytes(config: Mapping[str, Any]) -> int:
    """Float32 pixel values of the largest picture SGLang's processor passes on (Qwen2-VL /
    Qwen2.5-VL: MAX_PIXELS); 0 for towers not modelled here."""
    archs = config.get("architectures") or ()
    if not any(arch in QWEN_VL_ARCHS for arch in archs):
        return 0
    patches = QWEN_VL_MAX_PIXELS // (QWEN_VL_PATCH * QWEN_VL_PATCH)
    return patches * QWEN_VL_VALUES_PER_PATCH * PIXEL_BYTES


def vision_rules(config: Mapping[str, Any], version: tuple[int, ...] | None, share: float,
                 share_given: bool, tp: int, requests: int, context_bytes: int,
                 fast_processor: bool = True) -> VisionRules | None:
    """The multimodal rules of the releases read (0.4.4 to 0.4.9); None for a text model or
    another release. `context_bytes`: one process's CUDA context; `requests`: the requests
    in flight, each with the largest picture."""
    if version is None or not SHARE_FACTORS[0][0] <= version < MODELLED_UNTIL or \
            not is_multimodal(config):
        return None
    notes: list[str] = []
    since, factor, on_given = next(rule for rule in reversed(SHARE_FACTORS)
                                   if version >= rule[0])
    if on_given or not share_given:
        reduced = round(share * factor, 4)
        notes.append(f"mem_fraction_static {share} x {factor} = {reduced}: a multimodal model "
                     f"(sglang {'.'.join(map(str, since))}+ model_runner.py / server_args.py)")
        share = reduced
    unchunked = UNCHUNKED[0] <= version < UNCHUNKED[1]
    if unchunked:
        notes.append("chunked prefill off for a multimodal model (model_runner.py, v0.4.5 to "
                     "v0.4.6.post5): the whole prompt is one prefill")
    processes, held = 0, 0
    if fast_processor and version >= GPU_PROCESSING_SINCE:
        # the tokenizer manager, and before v0.4.6.post3 every other TP rank as well
        on_gpu = version < PIXELS_TO_CPU_SINCE
        processes = tp if on_gpu else 1
        pixels = largest_pixels_bytes(config) * max(requests, 1)
        # each a context and its copy of the pixels; TP rank 0 unpickles its own copy onto
        # its own GPU, in the same share
        held = processes * context_bytes + (processes + on_gpu) * pixels
        who = ("the tokenizer manager's" if processes == 1 else
               f"{processes} processes' (the tokenizer manager and TP ranks 1-{tp - 1} "
               "unpickling the pixel values onto cuda:0)")
        notes.append(f"image preprocessing on GPU 0 (fast image processor on 'cuda'): {who} "
                     f"CUDA context and the largest picture's pixel values, "
                     f"{format_bytes(held)} after GPU 0's pool was sized "
                     "(--disable-fast-image-processor keeps it on the CPU)")
    return VisionRules(share, unchunked, processes, held, tuple(notes))
