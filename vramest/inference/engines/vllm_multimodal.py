"""vLLM V1's multimodal profile at start-up: the vision encoder on a dummy batch, and the encoder
cache, before the text profile; both come out of the KV budget.

What vLLM does (v1/worker/gpu_model_runner.py profile_run, at v0.8.2 and v0.11.0 alike):
1. the largest item the processor allows, per modality (`get_mm_max_tokens_per_item`), and
   the modality with the most tokens;
2. the encoder budget: max(max_num_batched_tokens, that item's tokens), for both the compute
   budget and the cache (v1/core/encoder_cache_manager.py compute_encoder_budget @v0.8.2,
   compute_mm_encoder_budget @v0.11.0: max_num_encoder_input_tokens and encoder_cache_size
   both default to max_num_batched_tokens, vllm/config/scheduler.py @v0.11.0);
3. items: v0.8.2 and v0.9.2 min(cdiv(budget, tokens), max_num_seqs × limit_mm_per_prompt);
   v0.10.0 budget // tokens instead; v0.10.1 and v0.11.0 max(1, min(budget // tokens,
   max_num_seqs × max(1, min(limit, max_model_len // tokens)))) (v1/worker/utils.py
   MultiModalBudget.get_max_items);
4. `get_multimodal_embeddings` on that many copies of the dummy item (the encoder's peak);
5. its outputs kept in the encoder cache while the text profile runs (v0.11.0 first copies
   each into a zeroed (budget, width) tensor, v0.12.0 into one of the item's tokens).
Read at v0.8.2, v0.9.2, v0.10.0, v0.10.1, v0.11.0, v0.12.0, v0.13.0 and v0.14.0; later releases
follow v0.14.0's rules here, unverified.
`limit_mm_per_prompt` 0 for every modality turns it off ("Encoder cache will not be
initialized"), and so does `--skip-mm-profiling` from v0.10.1 (profile_run,
multimodal_config.skip_mm_profiling; not in v0.10.0).

Modelled towers: Qwen2-VL, Qwen2.5-VL, Qwen3-VL (V1); towers that take the largest picture at
one size (`_fixed_item`): Gemma 3's SigLIP, LLaVA-1.5's CLIP, InternVL's InternViT (13 tiles),
Pixtral / Mistral 3's Pixtral-ViT, Llama 4's 17 tiles, LLaVA-NeXT's anyres tiles (V1); and
Llama 3.2 Vision's encoder-decoder profile on V0 (`mllama_v0_profile`). Llama 3.2 Vision on V1
and other towers get no encoder profile yet: their KV cache is the text profile's.

The torch peak vLLM measures is therefore max(the encoder's own peak, the cache + the text
profile's peak).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.inference.constants import Constants
from vramest.inference.engines.versions import Release, VLLMRules
from vramest.inference.memory import Part, with_vision_tower
from vramest.model.vision import (
    VisionTower,
    fixed_size_tower,
    image_tokens,
    pixtral_tower,
)

if TYPE_CHECKING:
    from typing import Any

# Qwen2-VL / Qwen2.5-VL vision towers, the same at every size (config.json vision_config of
# Qwen/Qwen2-VL-7B-Instruct: embed_dim 1280, depth 32, mlp_ratio 4, num_heads 16; of
# Qwen/Qwen2.5-VL-7B-Instruct: hidden_size 1280, depth 32, intermediate_size 3420, gated SiLU
# MLP); the catalog keeps only their text settings
_QWEN2_VIT = {"hidden_size": 1280, "depth": 32, "intermediate_size": 5120, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}
_QWEN25_VIT = {**_QWEN2_VIT, "intermediate_size": 3420, "gated": True}
# The image processor's largest picture: preprocessor_config.json max_pixels 12845056 of
# Qwen2-VL / Qwen2.5-VL (16384 merged 28 px blocks; "Encoder cache will be initialized with a
# budget of 16384 tokens, and profiled with 1 image items", Qwen2.5-VL-7B on vLLM 0.8.2,
# QwenLM/Qwen3-VL issue #1057); Qwen3-VL's size.longest_edge 16777216 (16384 blocks of 32 px)
_QWEN2_MAX_PIXELS = 12845056
_QWEN3_MAX_PIXELS = 16777216
# Qwen3-VL's dummy video at v0.11.0 (model_executor/models/qwen3_vl.py): _MAX_FRAMES_PER_VIDEO
# 24576 frames, resized by the video processor to size.longest_edge 25165824 pixels over all
# frames (video_preprocessor_config.json), so 32 x 32 px each: 12288 merged tokens, counted
# x 12.5 for the timestamps and markers ("formatted_video_soft_tokens = video_soft_tokens *
# 12.5"): 153600 ("Encoder cache will be initialized with a budget of 153600 tokens, and
# profiled with 1 video items", vLLM issue #29743)
_QWEN3_VIDEO_FRAMES = 24576
_QWEN3_VIDEO_PIXELS = 25165824
_QWEN3_VIDEO_TOKEN_FACTOR = 12.5
_QWEN3_VIDEO_SINCE = Release((0, 11))
# Qwen2-VL / Qwen2.5-VL's dummy video (model_executor/models/qwen2_vl.py): the image's largest
# frames, as many as fit the length (get_num_frames_with_most_features), at most
# _MAX_FRAMES_PER_VIDEO: 16 at v0.8.2, v0.9.2 and v0.10.1, 14 at v0.11.0; before v0.11 the
# length is max_model_len less the image tokens of the images counted with it, from v0.11
# max_model_len itself
_QWEN2_MAX_FRAMES = ((Release((0,)), 16), (Release((0, 11)), 14))
_QWEN2_FRAMES_WHOLE_LENGTH_SINCE = Release((0, 11))
# the counts passed with the length: the per-prompt limits at v0.8.2 (registry.py
# get_max_tokens_per_item_by_modality), one of each modality from v0.9 (v0.9.2)
_ONE_OF_EACH_SINCE = Release((0, 9))
# --limit-mm-per-prompt default: 1 per modality at v0.8.2 (config.py get_limit_per_prompt),
# "999 if envs.VLLM_USE_V1 else 1" at v0.9.2 and v0.11.0 (config/multimodal.py)
_LIMIT_999_SINCE = Release((0, 9))
# What the encoder cache holds per dummy item (gpu_model_runner.py profile_run): v0.8.2-v0.10.1
# the output itself; v0.11.0 copies an output shorter than the budget into a zeroed (budget,
# width) tensor ("expanded_outputs"); v0.12.0 into one of the item's token count
# ("max_mm_tokens_per_item"); v0.13.0 and v0.14.0 cache the output itself again (tmp_{i})
_CACHE_ROWS = ((Release((0,)), "output"), (Release((0, 11)), "budget"),
               (Release((0, 12)), "item"), (Release((0, 13)), "output"))
# Qwen3-VL's video counted x 12.5 at v0.11.0 and v0.12.0; its soft tokens alone at v0.13.0 and
# v0.14.0 (qwen3_vl.py get_max_video_tokens), which the 16384-token image then outweighs
_QWEN3_VIDEO_FORMATTED_UNTIL = Release((0, 13))
# items = budget // tokens from v0.10.0 (gpu_model_runner.py profile_run; v1/worker/utils.py
# MultiModalBudget.get_max_items at v0.10.1 and v0.11.0); cdiv(budget, tokens) at v0.9.2 and
# v0.8.2; with the per-prompt bound max(1, min(limit, max_model_len // tokens)) from v0.10.1
_FLOOR_ITEMS_SINCE = Release((0, 10))
# --skip-mm-profiling: in gpu_model_runner.py at v0.10.1 and v0.11.0, not at v0.10.0
SKIP_MM_PROFILING_SINCE = Release((0, 10, 1))
# per patch at a ViT block's MLP: its ffn-wide tensors (fc1 out and the activation; a gated
# MLP's gate_up (2) and SiluAndMul out) and hidden-wide ones (residual, normed input, output)
_FFN_COPIES = 2.0
_GATED_FFN_COPIES = 3.0
_HIDDEN_COPIES = 3.0
# the HF image processor returns float32 pixel values (patch_size^2 x temporal x channels per
# patch), moved to the GPU as they are
_PIXEL_BYTES = 4


@frozen
class EncoderProfile:
    modality: str
    tokens_per_item: int  # vLLM's largest item, in prompt tokens
    items: int
    budget_tokens: int  # encoder compute budget = encoder cache size
    patches_per_item: int
    tower_peak_bytes: int  # one GPU, the encoder's forward over every item
    cache_bytes: int  # one GPU, the outputs kept through the text profile
    v0_sequences: int = 0  # V0's decoder-only profile: the sequences it runs and samples

    def peak(self, text_peak: int) -> int:
        """vLLM's measured peak: the encoder's own, or its cache beside the text profile."""
        return max(self.tower_peak_bytes, self.cache_bytes + text_peak)

    def note(self) -> str:
        gib = 1 / 2**30
        if self.v0_sequences:
            return (f"Multimodal profile (V0): {self.v0_sequences} dummy sequences of "
                    f"max_num_batched_tokens / {self.v0_sequences} tokens, {self.items} "
                    f"{self.tokens_per_item:,}-token picture(s) ({self.patches_per_item:,} "
                    f"patches each) through the vision tower at once: peak "
                    f"{self.tower_peak_bytes * gib:.2f} GiB (--limit-mm-per-prompt image=0 "
                    "leaves it out).")
        if not self.budget_tokens:  # V0's encoder-decoder profile (Llama 3.2 Vision)
            return (f"Multimodal profile (V0): each of the {self.items} dummy sequences brings a "
                    f"{self.tokens_per_item:,}-token picture ({self.patches_per_item:,} "
                    f"patches), all through the vision model at once: peak "
                    f"{self.tower_peak_bytes * gib:.2f} GiB; their cross-attention states "
                    f"({self.cache_bytes * gib:.2f} GiB) stay through the text profile "
                    "(--max-num-seqs lowers both).")
        return (f"Multimodal profile: encoder cache budget {self.budget_tokens:,} tokens, "
                f"profiled with {self.items} {self.modality} item(s) of {self.tokens_per_item:,} "
                f"tokens ({self.patches_per_item:,} patches each): encoder peak "
                f"{self.tower_peak_bytes * gib:.2f} GiB, encoder cache "
                f"{self.cache_bytes * gib:.2f} GiB kept through the text profile "
                "(--limit-mm-per-prompt 0 or --skip-mm-profiling leaves them out).")


def _tower(config: Mapping[str, Any]) -> dict[str, Any] | None:
    family = str(config.get("model_type", "")).lower()
    vision = config.get("vision_config")
    vision = dict(vision) if isinstance(vision, Mapping) else {}
    if family == "qwen2_vl":
        base = dict(_QWEN2_VIT)
        if "embed_dim" in vision:
            vision["hidden_size"] = vision["embed_dim"]
            vision["intermediate_size"] = int(vision["embed_dim"] * vision.get("mlp_ratio", 4))
    elif family == "qwen2_5_vl":
        base = dict(_QWEN25_VIT)
    elif family in ("qwen3_vl", "qwen3_vl_moe"):
        base = {"patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                "in_channels": 3}
    else:
        return None
    base.update({k: v for k, v in vision.items() if k in (
        "hidden_size", "depth", "intermediate_size", "patch_size", "spatial_merge_size",
        "temporal_patch_size", "in_channels", "out_hidden_size", "deepstack_visual_indexes")})
    return base if "hidden_size" in base and "intermediate_size" in base else None


Limits = tuple[tuple[str, int], ...]  # --limit-mm-per-prompt: (modality, items) pairs


def _limit(release: Release, limits: Limits | None, modality: str) -> int:
    """Items of a modality allowed per prompt: the given limit, else the release's default."""
    given = dict(limits or ())
    if modality in given:
        return given[modality]
    return 999 if release >= _LIMIT_999_SINCE else 1


def _grid_t(frames: int, temporal: int) -> int:
    """Temporal groups of a clip: frames padded to temporal_patch_size (frames % temporal
    added, as vLLM pads them), at least one."""
    return max((frames + frames % temporal) // temporal, 1)


def _qwen2_video_tokens(image_tokens: int, temporal: int, release: Release, length: int,
                        limits: Limits | None) -> int:
    """Tokens of Qwen2/2.5-VL's dummy video: frames of the largest picture, as many as fit."""
    images, videos = (_limit(release, limits, "image"), _limit(release, limits, "video"))
    if release >= _ONE_OF_EACH_SINCE:  # one of each modality that is not turned off
        images, videos = min(images, 1), min(videos, 1)
    if release < _QWEN2_FRAMES_WHOLE_LENGTH_SINCE:
        length -= image_tokens * images
    fitting = 0
    while fitting < 1 << 16 and _grid_t(fitting + 1, temporal) * image_tokens <= length:
        fitting += 1
    cap = next(frames for since, frames in reversed(_QWEN2_MAX_FRAMES) if release >= since)
    frames = max(min(fitting // max(videos, 1), cap), 1)
    return _grid_t(frames, temporal) * image_tokens


def _items(release: Release, budget: int, tokens: int, max_num_seqs: int, limit: int,
           max_model_len: int) -> int:
    """How many copies of the largest item the profile runs through the encoder."""
    if release >= SKIP_MM_PROFILING_SINCE:
        per_prompt = max(1, min(limit, max_model_len // tokens))
        return max(1, min(budget // tokens, max_num_seqs * per_prompt))
    if release >= _FLOOR_ITEMS_SINCE:
        return max(1, min(budget // tokens, max_num_seqs * limit))
    return min(-(-budget // tokens), max_num_seqs * limit)


def _cache_rows(release: Release, budget: int, tokens: int, merged: int) -> int:
    """Rows the encoder cache keeps per dummy item at this release (_CACHE_ROWS)."""
    kept = next(rule for since, rule in reversed(_CACHE_ROWS) if release >= since)
    return max({"budget": budget, "item": tokens, "output": merged}[kept], merged)


def encoder_profile(config: Mapping[str, Any], rules: VLLMRules, release: Release, *,
                    text_hidden: int, max_model_len: int, batched_tokens: int,
                    max_num_seqs: int, tp: int, act_bytes: float,
                    limits: Limits | None = None,
                    max_pixels: int | None = None,
                    constants: Constants | None = None) -> EncoderProfile | None:
    """The encoder profile of a vision-language model on a V1 release (Qwen-VL's towers here,
    fixed-size towers in `_fixed_profile`), or None where vLLM runs none (V0, every limit 0)
    or the tower is not modelled."""
    image_on = _limit(release, limits, "image") > 0
    video_on = _limit(release, limits, "video") > 0
    if rules.engine != "v1" or not (image_on or video_on):
        return None
    tower = _tower(config)
    if tower is None:
        fixed = _fixed_item(config) if image_on else None
        if fixed is None:
            return None
        budget = max(batched_tokens, fixed.tokens)
        items = _items(release, budget, fixed.tokens, max_num_seqs,
                       _limit(release, limits, "image"), max_model_len)
        return _fixed_profile(fixed, release, items, budget, text_hidden, tp, act_bytes,
                              constants or Constants())
    patch, merge = int(tower["patch_size"]), int(tower["spatial_merge_size"])
    temporal = int(tower["temporal_patch_size"])
    qwen3 = "deepstack_visual_indexes" in tower or str(config.get("model_type")).startswith(
        "qwen3")
    block = patch * merge
    pixels_cap = max_pixels or (_QWEN3_MAX_PIXELS if qwen3 else _QWEN2_MAX_PIXELS)
    image_tokens = max(1, pixels_cap // (block * block))
    # an image is one frame padded to temporal_patch_size: merge^2 patches per token
    modality, tokens, merged = "image", image_tokens if image_on else 0, image_tokens
    if not video_on:
        pass
    elif qwen3 and release >= _QWEN3_VIDEO_SINCE:
        video_merged = _QWEN3_VIDEO_PIXELS // (block * block * temporal)
        factor = _QWEN3_VIDEO_TOKEN_FACTOR if release < _QWEN3_VIDEO_FORMATTED_UNTIL else 1
        video_tokens = int(video_merged * factor)
        if video_tokens > tokens:
            side = max(block, math.floor(math.sqrt(_QWEN3_VIDEO_PIXELS / _QWEN3_VIDEO_FRAMES)
                                         / block) * block)
            modality, tokens = "video", video_tokens
            merged = _QWEN3_VIDEO_FRAMES // temporal * (side // block) ** 2
    elif not qwen3:
        video_tokens = _qwen2_video_tokens(image_tokens, temporal, release, max_model_len,
                                           limits)
        if video_tokens > tokens:  # a tie goes to the image (the first modality)
            modality, tokens, merged = "video", video_tokens, video_tokens
    patches = merged * merge * merge
    budget = max(batched_tokens, tokens)
    if not tokens:  # images off and no video for this tower and release
        return None
    items = _items(release, budget, tokens, max_num_seqs, _limit(release, limits, modality),
                   max_model_len)
    hidden, ffn = int(tower["hidden_size"]), int(tower["intermediate_size"])
    ffn_copies = _GATED_FFN_COPIES if tower.get("gated") else _FFN_COPIES
    out = int(tower.get("out_hidden_size", text_hidden))
    width = out * (1 + len(tower.get("deepstack_visual_indexes") or ()))
    pixels = patch * patch * temporal * int(tower["in_channels"])
    # the tower's linear layers split over the TP ranks (ColumnParallel / RowParallel in
    # vLLM's Qwen vision blocks); the residual stream stays whole on each. The processor's
    # pixel values stay in float32 beside them for the whole call
    per_patch = (ffn_copies * ffn / tp + _HIDDEN_COPIES * hidden) * act_bytes + \
        pixels * _PIXEL_BYTES
    tower_peak = items * (patches * per_patch + merged * width * act_bytes)
    cache = items * _cache_rows(release, budget, tokens, merged) * width * act_bytes
    return EncoderProfile(modality, tokens, items, budget, patches, round(tower_peak),
                          round(cache))


# Gemma 3's SigLIP, the same in google/gemma-3-{4b,12b,27b}-it (config.json vision_config:
# siglip_vision_model, image_size 896, patch_size 14, hidden_size 1152, intermediate_size 4304,
# 27 layers, 16 heads), for catalog entries that keep only the text settings
_GEMMA3_SIGLIP = {"model_type": "siglip_vision_model", "image_size": 896, "patch_size": 14,
                  "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                  "num_attention_heads": 16}
# Gemma 3's largest item: (num_crops + 1) x image_seq_length (gemma3_mm.py get_num_image_tokens
# @v0.8.2, v0.11.0), num_crops 0 with pan-and-scan off, the processor's default
# (preprocessor_config.json do_pan_and_scan unset; gemma3_mm.py get_num_crops returns 0)
_GEMMA3_TOKENS = 256
# InternVL: the dummy picture is the tile grid with the most features, max_dynamic_patch tiles
# (12 in InternVL2.5/3 config.json) plus the thumbnail (internvl.py resolve_min_max_num
# "max_dynamic_patch += 1" with use_thumbnail, get_image_size_with_most_features @v0.8.2,
# v0.11.0)
_INTERNVL_TILES = 12
# Llama 4's image processor: max_patches 16 tiles (preprocessor_config.json of
# meta-llama/Llama-4-Scout-17B-16E-Instruct; mllama4.py get_max_num_tiles reads it)
_LLAMA4_MAX_TILES = 16
# its vision_config pixel_shuffle_ratio (config.json of Llama-4-Scout and -Maverick)
_LLAMA4_SHUFFLE = 0.5


@frozen
class _FixedItem:
    """vLLM's largest dummy item for a tower that takes pictures at one size."""

    tokens: int  # embeddings vLLM counts for it (the encoder's output rows)
    pictures: int  # tower inputs: InternVL's tiles, else 1
    tower: VisionTower


def _fixed_item(config: Mapping[str, Any]) -> _FixedItem | None:
    """Gemma 3, LLaVA-1.5 (CLIP), InternVL 2.5/3 and Pixtral / Mistral 3 at vLLM's dummy
    picture; None for other models."""
    family = str(config.get("model_type", "")).lower()
    if family == "gemma3":
        if not isinstance(config.get("vision_config"), Mapping):
            config = {**config, "vision_config": _GEMMA3_SIGLIP}
        tower = fixed_size_tower(config)
        tokens = int(config.get("mm_tokens_per_image", _GEMMA3_TOKENS))
        return _FixedItem(tokens, 1, tower) if tower else None
    pixtral = pixtral_tower(config)
    if pixtral is not None and family in ("mistral3", "llava", "pixtral"):
        vision = config["vision_config"]
        cell = int(vision["patch_size"]) * int(config.get("spatial_merge_size", 1))
        # ncols x nrows (PixtralHFEncoderInfo.get_num_image_tokens @v0.8.2, v0.11.0); the
        # [IMG_BREAK] tokens are text, not encoder output
        return _FixedItem((int(vision["image_size"]) // cell) ** 2, 1, pixtral)
    if family == "llama4":
        return _llama4_item(config)
    if family == "llava_next":
        return _llava_next_item(config)
    tower = fixed_size_tower(config)
    if tower is None:
        return None
    if family == "llava":
        # vLLM builds the CLIP only up to the feature layer (llava.py _get_num_hidden_layers,
        # num_hidden_layers_override), so no earlier states are kept, and its quick_gelu is
        # one fused op (QuickGELU): the encoder's 2 x ffn
        tower = replace(tower, kept_states=0, ffn_copies=None)
        return _FixedItem(image_tokens(config, tower.side, tower.side).per_image, 1, tower)
    if family == "internvl":
        ratio = float(config.get("downsample_ratio", 0.5))
        per_tile = round((tower.patches - 1) * ratio * ratio)  # the CLS token is dropped
        tiles = int(config.get("max_dynamic_patch", _INTERNVL_TILES))
        tiles += 1 if config.get("use_thumbnail", True) and tiles > 1 else 0
        return _FixedItem(tiles * per_tile, tiles, tower)
    return None


def _llava_next_item(config: Mapping[str, Any]) -> _FixedItem | None:
    """LLaVA-NeXT's dummy picture: the image_grid_pinpoints entry (height, width) with the most
    features (llava_next.py get_image_size_with_most_features @v0.8.2, v0.11.0): its tiles of
    the CLIP side, unpadded (a pinpoint needs no padding), a newline feature per row, and the
    base picture's features; the tower runs the base picture and every tile."""
    tower = fixed_size_tower({**config, "model_type": "llava"})
    pinpoints = config.get("image_grid_pinpoints")
    if tower is None or not isinstance(pinpoints, (list, tuple)) or not pinpoints:
        return None
    base = image_tokens({**config, "model_type": "llava"}, tower.side, tower.side).per_image
    grid = math.isqrt(base)  # patches along a side
    best: tuple[int, int] = (0, 0)
    try:
        for height, width in pinpoints:
            rows, cols = int(height) // tower.side, int(width) // tower.side
            tokens = grid * rows * grid * cols + grid * rows + base
            best = max(best, (tokens, rows * cols))
    except (TypeError, ValueError):
        return None
    # the same CLIP as LLaVA-1.5's (vLLM builds it to the feature layer; QuickGELU fused)
    return _FixedItem(best[0], 1 + best[1], replace(tower, kept_states=0, ffn_copies=None))


def _llama4_item(config: Mapping[str, Any]) -> _FixedItem | None:
    """Llama 4's dummy picture: max_patches tiles of image_size (a 16:1 picture) and the global
    tile, each (image_size / patch_size)^2 patches plus the class token, pixel-shuffled to
    patches x pixel_shuffle_ratio^2 tokens (mllama4.py get_patch_per_chunk,
    get_image_size_with_most_features @v0.11.0: 17 x 144 = 2448 tokens, 3 in a budget of
    8192)."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return None
    try:
        side, patch = int(vision["image_size"]), int(vision["patch_size"])
        hidden = int(vision["hidden_size"])
        shuffle = float(vision.get("pixel_shuffle_ratio", _LLAMA4_SHUFFLE))
        per_tile = round((side // patch) ** 2 * shuffle * shuffle)
        tower = VisionTower(patches=(side // patch) ** 2 + 1, hidden=hidden,
                            ffn=int(vision["intermediate_size"]),
                            heads=int(vision["num_attention_heads"]), side=side)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    tiles = _LLAMA4_MAX_TILES + 1
    return _FixedItem(tiles * per_tile, tiles, tower)


def _fixed_profile(item: _FixedItem, release: Release, items: int, budget: int,
                   text_hidden: int, tp: int, act_bytes: float,
                   constants: Constants) -> EncoderProfile:
    """The encoder's forward over every dummy item at once, and the outputs it caches."""
    # vLLM's ViT blocks split fc1/fc2 over TP (ColumnParallelLinear / RowParallelLinear in
    # siglip.py, clip.py, intern_vit.py, pixtral.py) and attend through fused kernels, no
    # score matrix (MultiHeadAttention or xformers @v0.8.2, v0.11.0; MMEncoderAttention
    # @v0.14.0): the tower's MLP moment, as memory.with_vision_tower counts it
    split = replace(item.tower, ffn=-(-item.tower.ffn // tp))
    pictures = items * item.pictures
    tower = with_vision_tower(Part("vision encoder", 0, ""), split, pictures, act_bytes,
                              "flash", constants).bytes
    output = items * item.tokens * text_hidden * act_bytes  # projected to the text width
    cache = items * _cache_rows(release, budget, item.tokens, item.tokens) * text_hidden * \
        act_bytes
    return EncoderProfile("image", item.tokens, items, budget,
                          item.pictures * item.tower.patches, round(tower + output),
                          round(cache))


# Llama 3.2 Vision (mllama): V0's encoder-decoder profile (worker/enc_dec_model_runner.py
# profile_run @v0.6.6) builds max_num_seqs sequences, each with limit_mm_per_prompt images
# (1 by default) of the dummy 1024 x 1024 picture (models/mllama.py dummy_image), which the
# image processor tiles 2 x 2: "pixel_values is torch.Size([256, 1, 1, 4, 3, 560, 560])" at
# the default 256 sequences (vLLM issue #10569). The vision model runs them all at once.
# The vision_config of meta-llama/Llama-3.2-11B-Vision (and -90B): image_size 560, patch_size
# 14, max_num_tiles 4, hidden_size 1280, intermediate_size 5120, intermediate_layers_indices
# [3, 7, 15, 23, 30]
_MLLAMA = {"image_size": 560, "patch_size": 14, "max_num_tiles": 4, "hidden_size": 1280,
           "intermediate_size": 5120}
# MllamaVisionModel.forward @v0.6.6 pads each tile's patches (+ CLS) to a multiple of 8 and
# builds a (batch, 1, L, L) additive mask in the compute dtype for L = tiles x padded patches
# (_prepare_aspect_ratio_attention_mask: "attention_mask @ attention_mask.transpose(-1, -2)");
# beside it, per patch, fc1's output and its GELU (2 x ffn, split over TP) and hidden-wide
# tensors. Their number is fitted to vLLM PR #12126's H100 log (Llama-3.2-11B-Vision, 128
# sequences, max_model_len 65536: "PyTorch activation peak memory takes 36.63GiB", 293 MiB a
# picture): 5.6. Following the code's order on fake tensors gives more at the global encoder
# (16: the kept intermediate states, their stacked copy and the block's own), which the log
# does not show, so the measured figure stands.
_MLLAMA_PATCH_ALIGN = 8
_MLLAMA_HIDDEN_COPIES = 5.6


def mllama_v0_profile(config: Mapping[str, Any], rules: VLLMRules, release: Release, *,
                      text_hidden: int, max_num_seqs: int, tp: int, act_bytes: float,
                      limits: Limits | None = None) -> EncoderProfile | None:
    """V0's profile of Llama 3.2 Vision: every dummy sequence's picture through the vision
    model in one batch; None on V1 or for other models."""
    per_prompt = _limit(release, limits, "image")
    if rules.engine != "v0" or str(config.get("model_type", "")).lower() != "mllama" or \
            not per_prompt:
        return None
    vision = config.get("vision_config")
    tower = {**_MLLAMA, **(dict(vision) if isinstance(vision, Mapping) else {})}
    tiles = int(tower["max_num_tiles"])
    per_tile = (int(tower["image_size"]) // int(tower["patch_size"])) ** 2 + 1
    padded = -(-per_tile // _MLLAMA_PATCH_ALIGN) * _MLLAMA_PATCH_ALIGN
    length = tiles * padded
    images = max_num_seqs * per_prompt
    hidden, ffn = int(tower["hidden_size"]), int(tower["intermediate_size"])
    copies = _MLLAMA_HIDDEN_COPIES
    per_image = length * length + length * (_FFN_COPIES * ffn / tp + copies * hidden)
    # the projected cross-attention states stay through the decoder's forward
    states = images * tiles * per_tile * text_hidden * act_bytes
    return EncoderProfile("image", tiles * per_tile, images, 0, length,
                          round(images * per_image * act_bytes), round(states))


# V0's profile of a decoder-only vision-language model (worker/model_runner.py _dummy_run
# @v0.8.3): "max_num_seqs = min(max_num_seqs, max_num_batched_tokens // max_mm_tokens)" (at
# least 1), each dummy sequence max_num_batched_tokens // that many tokens long and carrying
# limit_mm_per_prompt items of the largest size (1 per modality by default in V0); the model's
# forward runs the vision tower on every sequence's pictures at once (gemma3_mm.py
# _process_image_input @v0.8.3), then the language model over all the tokens, and samples
# that many sequences. Read at v0.8.3; the same rule in the 0.6.0 wheel (model_runner.py
# profile_run), with PR #8028's batch floor (4096 there, 5120 from 0.6.3).
_V0_MM_PROFILE_SINCE = Release((0, 6))


def v0_encoder_profile(config: Mapping[str, Any], rules: VLLMRules, release: Release, *,
                       text_hidden: int, batched_tokens: int, max_num_seqs: int, tp: int,
                       act_bytes: float, limits: Limits | None = None,
                       constants: Constants | None = None) -> EncoderProfile | None:
    """V0's multimodal profile for the fixed-size towers (Gemma 3's SigLIP, LLaVA's CLIP,
    Pixtral, InternVL...): `items` is the number of dummy pictures, one per profiled sequence
    at the default limit; None on V1, for Llama 3.2 Vision (`mllama_v0_profile`) and for
    towers not modelled."""
    family = str(config.get("model_type", "")).lower()
    per_prompt = dict(limits or ()).get("image", 1)  # V0's default limit is 1
    if rules.engine != "v0" or release < _V0_MM_PROFILE_SINCE or family == "mllama" or \
            per_prompt <= 0:
        return None
    item = _fixed_item(config)
    if item is None:
        return None
    seqs = max(1, min(max_num_seqs, batched_tokens // (item.tokens * per_prompt)))
    # the embeddings are merged into the text input, which the text profile counts; what the
    # tower leaves beside the text forward is its output rows, kept as "cache" here
    profile = _fixed_profile(item, release, seqs * per_prompt, 0, text_hidden, tp, act_bytes,
                             constants or Constants())
    return replace(profile, v0_sequences=seqs)


# multimodal families whose catalog config may leave its vision_config out (Gemma 3's SigLIP,
# Mistral 3 / Pixtral, InternVL, LLaVA, Llama 3.2 Vision on V1)
_VISION_FAMILIES = ("gemma3", "mistral3", "pixtral", "internvl", "internvl_chat", "llava",
                    "llava_next", "mllama")


def unmodelled_encoder_note(config: Mapping[str, Any], rules: VLLMRules, skipped: bool,
                            limits: Limits | None, profile: EncoderProfile | None) -> str:
    """What to say when vLLM V1 profiles a vision encoder that is not modelled here."""
    family = str(config.get("model_type", ""))
    vision = isinstance(config.get("vision_config"), Mapping) or family in _VISION_FAMILIES
    if profile is not None or skipped or rules.engine != "v1" or not vision:
        return ""
    if limits and all(count == 0 for _, count in limits):
        return ""
    return (f"vLLM V1 also profiles {family or 'this model'}'s vision encoder at start-up, which is not "
            "modelled here: its peak and encoder cache come out of the KV cache, so vLLM's "
            "will be smaller than shown (--limit-mm-per-prompt 0 gives the figure above).")
