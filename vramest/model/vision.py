"""Images in a vision-language model's context: how many tokens one picture becomes.

Each rule is the family's image processor, read from transformers (facts, with the class):
- Qwen2-VL / Qwen2.5-VL (Qwen2VLImageProcessor): the image is resized to multiples of
  patch × merge (14 × 2 = 28 px) with its pixel count kept within min_pixels 56 × 56 and
  max_pixels 28 × 28 × 1280; one token per 28 × 28 block, plus vision_start and vision_end.
- Gemma 3 (Gemma3Processor): every image is resized to the vision tower's square and pooled
  to `mm_tokens_per_image` (256) soft tokens, plus start_of_image and end_of_image.
- LLaVA (LlavaProcessor, "default" feature strategy): (image_size / patch_size)^2 patch
  features, the CLS feature dropped: 576 for a 336 px CLIP tower.
- Pixtral / Mistral 3 (PixtralImageProcessor): resized to fit within image_size at its aspect
  ratio, one token per patch (per merged 2 × 2 patches with spatial_merge_size 2), an
  [IMG_BREAK] after each row ([IMG_END] after the last).
- InternVL 2.5 / 3 (dynamic_preprocess, OpenGVLab/InternVL internvl_chat/internvl/train/
  dataset.py @1831ceb9): the picture is cut into 448 px tiles on the grid (i, j), 1 <= i x j <=
  max_dynamic_patch (12), whose aspect ratio is closest to the picture's (ties: the larger grid
  when the picture covers more than half of it), plus a 448 px thumbnail when there is more
  than one tile; each tile is (448 / 14)^2 patches, pixel-shuffled by downsample_ratio 0.5 to
  256 tokens; <img> and </img> around them.
- Llama 3.2 Vision (mllama): one <|image|> token in the text; the picture's tiles reach the
  cross-attention layers, which keep their own KV (not modelled here: refused).

The towers' parameters (`vision_tower_params`) are counted tensor by tensor from transformers'
modeling code (CLIPVisionModel for LLaVA, SiglipVisionModel for Gemma 3, PixtralVisionModel for
Pixtral and Mistral 3, InternVLVisionModel for InternVL) with their projectors, and equal the
meta-device count of the whole model less its language model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

MAX_IMAGES = 10_000
MAX_SIDE = 100_000


@frozen
class ImageRequest:
    count: int
    width: int
    height: int


@frozen
class ImageTokens:
    per_image: int
    rule: str


def parse_images(count: str | int | None, size: str | None) -> ImageRequest | None:
    """--images N and --image-size WxH (default 1024x1024)."""
    if count in (None, "", 0, "0"):
        if size:
            raise InputError("--image-size needs --images N (how many pictures).")
        return None
    try:
        n = int(str(count))
    except ValueError:
        raise InputError(f"--images takes a whole number of pictures, got {count!r}.") from None
    if not 0 < n <= MAX_IMAGES:
        raise InputError(f"--images must be between 1 and {MAX_IMAGES}, got {n}.")
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", size or "1024x1024")
    if not match:
        raise InputError(f"--image-size takes WIDTHxHEIGHT in pixels (such as 1280x720), got "
                         f"{size!r}.")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise InputError(f"--image-size sides must be 1..{MAX_SIDE} pixels, got {size!r}.")
    return ImageRequest(n, width, height)


def model_config(model: str | None) -> Mapping[str, Any]:
    """The config.json of a catalog model or a model path, for its vision settings."""
    if not model:
        raise InputError("--images needs --model (a vision-language model's catalog name, "
                         "config.json or folder).")
    from vramest.model.catalog import default_catalog

    entry = default_catalog().get(model)
    if entry is not None:
        return entry.config
    from vramest.readers.inspect import inspect_path

    return inspect_path(model).config or {}


@frozen
class VisionTower:
    """A ViT that takes every picture at one square size (SigLIP in Gemma 3, CLIP in LLaVA):
    what its forward holds depends on its patches per picture, not on the picture given."""

    patches: int  # per picture: (image_size / patch_size)^2
    hidden: int
    ffn: int
    heads: int
    side: int  # pixels
    # hidden-wide tensors live beside the MLP's at its peak; None: the encoder constant (3).
    # InternViT's layer scales (lambda_1, lambda_2) keep two more: 5, from a fake-tensor trace
    # of InternVL3-8B's InternViT-300M (transformers 5.24 InternVLVisionModel, 1 and 9 tiles:
    # 27.2 and 244.6 MiB at the GELU, pixels included)
    hidden_copies: float | None = None
    # ffn-wide tensors at the MLP's peak; None: the encoder constant (2). CLIP's quick_gelu
    # (x * sigmoid(1.702 x)) keeps 3, and with CLIP's norms 4 hidden-wide ones: fake-tensor
    # traces of CLIPVisionModel ViT-L/14-336 in fp16 (transformers 5.24), 16,384 elements a
    # patch at ffn 4096 and 10,240 at ffn 2048
    ffn_copies: float | None = None
    # hidden states the tower returns and the caller keeps (LLaVA reads a layer other than the
    # last, so every layer's output stays): layers - 2 beyond those the block holds anyway
    # (the same traces with output_hidden_states: 22 x hidden more at 24 layers, 10 at 12)
    kept_states: int = 0
    # eager attention's softmax in the compute dtype (InternVL's eager_attention_forward calls
    # softmax without dtype=float32), not SigLIP's fp32 upcast: 77.3 MiB a tile, traced
    softmax_in_compute_dtype: bool = False


def fixed_size_tower(config: Mapping[str, Any]) -> VisionTower | None:
    """The vision tower of a Gemma 3, LLaVA (CLIP) or InternVL config, which takes every
    picture (InternVL: every 448 px tile, CLS token included) at one square size; None for
    towers whose patches follow the picture's size (Qwen-VL, Pixtral), or where the config
    does not say."""
    family = str(config.get("model_type", "")).lower()
    vision = config.get("vision_config")
    if family not in ("gemma3", "llava", "internvl") or not isinstance(vision, Mapping) or \
            str(vision.get("model_type", "")) == "pixtral":
        return None
    try:
        side, patch = _side(vision["image_size"]), _side(vision["patch_size"])
        hidden = int(vision["hidden_size"])
        intern = family == "internvl"
        clip = str(vision.get("model_type", "")) == "clip_vision_model"
        layers = int(vision.get("num_hidden_layers", 0))
        feature = config.get("vision_feature_layer", -2 if family == "llava" else -1)
        kept = max(0, layers - 2) if feature != -1 else 0
        quick = str(vision.get("hidden_act", "quick_gelu" if clip else "")) == "quick_gelu"
        return VisionTower(patches=(side // patch) ** 2 + (1 if intern or clip else 0),
                           hidden=hidden, ffn=int(vision.get("intermediate_size", 4 * hidden)),
                           heads=int(vision["num_attention_heads"]), side=side,
                           hidden_copies=5.0 if intern else 4.0 if clip else None,
                           softmax_in_compute_dtype=intern,
                           ffn_copies=3.0 if quick else None, kept_states=kept)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _side(value: Any) -> int:
    """A size given as an int or as [height, width] (InternVL's image_size, patch_size)."""
    if isinstance(value, (list, tuple)) and value:
        return int(value[0])
    return int(value)


def _vit_block(h: int, ffn: int, *, bias: bool = True, gated: bool = False,
               norm_bias: bool = True) -> int:
    """One pre-norm ViT block: q, k, v, o; two norms; an MLP (gated: three bias-free
    projections)."""
    attention = 4 * h * h + (4 * h if bias else 0)
    mlp = 3 * h * ffn if gated else 2 * h * ffn + (ffn + h if bias else 0)
    return attention + mlp + 2 * h * (2 if norm_bias else 1)


def vision_tower_params(config: Mapping[str, Any], text_hidden: int) -> int | None:
    """Parameters of a multimodal config's vision tower and projector, or None for a tower
    whose tensors are not listed here (its count then falls back to the blocks alone)."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return None
    family = str(config.get("model_type", "")).lower()
    kind = str(vision.get("model_type", "")).lower()
    if family in ("qwen3_5", "qwen3_5_moe", "qwen3_vl", "qwen3_vl_moe"):
        from vramest.model.qwen_vit import vision_params

        return vision_params(vision, text_hidden)
    try:
        h = int(vision["hidden_size"])
        ffn = int(vision.get("intermediate_size", 4 * h))
        layers = int(vision.get("num_hidden_layers", vision.get("depth", 0)))
        patch = _side(vision.get("patch_size", 14))
        image = _side(vision.get("image_size", 224))
        channels = int(vision.get("num_channels", 3))
    except (KeyError, TypeError, ValueError):
        return None
    patches = (image // patch) ** 2 if patch else 0
    conv = channels * patch * patch * h
    if kind == "clip_vision_model" and family in ("llava", "llava_next"):
        # CLIPVisionEmbeddings (class embedding, bias-free conv, positions incl. CLS),
        # pre_layrnorm, blocks, post_layernorm; LLaVA-NeXT adds one image_newline vector of
        # the text width (transformers LlavaNextModel.image_newline)
        tower = h + conv + (patches + 1) * h + 2 * h + layers * _vit_block(h, ffn) + 2 * h
        newline = text_hidden if family == "llava_next" else 0
        return tower + _llava_projector(config, h, text_hidden) + newline
    if kind in ("siglip_vision_model", "siglip2_vision_model") and family == "gemma3":
        # SiglipVisionEmbeddings (biased conv, positions), blocks, post_layernorm; the
        # projector's mm_input_projection_weight and mm_soft_emb_norm
        tower = conv + h + patches * h + layers * _vit_block(h, ffn) + 2 * h
        if vision.get("vision_use_head", True):  # SiglipMultiheadAttentionPoolingHead: probe,
            # attention (in_proj, out_proj, biased), LayerNorm, MLP
            tower += h + 4 * h * h + 4 * h + 2 * h + 2 * h * ffn + ffn + h
        return tower + h * text_hidden + h
    if kind == "pixtral":
        # patch_conv (no bias), ln_pre (RMSNorm), blocks of bias-free attention and SwiGLU
        tower = conv + h + layers * _vit_block(h, ffn, bias=False, gated=True,
                                               norm_bias=False)
        if family == "mistral3":
            merge = int(config.get("spatial_merge_size", 2))
            bias = bool(config.get("multimodal_projector_bias", False))
            return tower + h + merge * merge * h * h + h * text_hidden + \
                text_hidden * text_hidden + (2 * text_hidden if bias else 0)
        if family == "llava":
            return tower + _llava_projector(config, h, text_hidden)
        return None
    if kind == "internvl_vision" and family == "internvl":
        return _internvl(config, vision, h, ffn, layers, patches, conv, text_hidden)
    return None


def _llava_projector(config: Mapping[str, Any], h: int, text_hidden: int) -> int:
    """LlavaMultiModalProjector: linear_1 over the selected layers' features, GELU, linear_2."""
    feature = config.get("vision_feature_layer", -2)
    width = h * (len(feature) if isinstance(feature, list) else 1)
    bias = 2 * text_hidden if config.get("multimodal_projector_bias", True) else 0
    return width * text_hidden + text_hidden * text_hidden + bias


def _internvl(config: Mapping[str, Any], vision: Mapping[str, Any], h: int, ffn: int,
              layers: int, patches: int, conv: int, text_hidden: int) -> int:
    """InternVLVisionModel: CLS token, biased patch conv, positions (with CLS); blocks with
    layer-scale lambdas and optional q/k norms; a final norm unless mean pooling; the
    projector: LayerNorm over the pixel-shuffled width, linear_1, GELU, linear_2."""
    rms = str(vision.get("norm_type", "layer_norm")) == "rms_norm"
    bias = bool(vision.get("attention_bias", True))
    block = (4 * h * h + (3 * h if bias else 0) + h  # q, k, v (+ bias), projection_layer + bias
             + 2 * h * ffn + ffn + h  # fc1, fc2 with biases
             + 2 * h * (1 if rms else 2)  # layernorm_before, layernorm_after
             + 2 * h  # lambda_1, lambda_2
             + (2 * h if vision.get("use_qk_norm", False) else 0))
    positions = (patches + 1) * h if vision.get("use_absolute_position_embeddings", True) else 0
    final = 0 if vision.get("use_mean_pooling", True) else h * (1 if rms else 2)
    tower = h + conv + h + positions + layers * block + final
    ratio = float(config.get("downsample_ratio", 0.5))
    shuffled = round(h / (ratio * ratio))
    return tower + 2 * shuffled + shuffled * text_hidden + text_hidden + \
        text_hidden * text_hidden + text_hidden


def tower_pictures(config: Mapping[str, Any], images: ImageRequest) -> int:
    """How many fixed-size inputs the tower runs for the pictures: InternVL's tiles (with the
    thumbnail), one per picture otherwise."""
    if str(config.get("model_type", "")).lower() == "internvl":
        return images.count * internvl_tiles(images.width, images.height,
                                             int(config.get("max_dynamic_patch", 12)))[2]
    return images.count


def native_side(config: Mapping[str, Any]) -> int:
    """The square side (pixels) the vision tower takes a picture at (its `image_size`)."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping) or not isinstance(vision.get("image_size"), int):
        raise InputError("This model's config has no vision_config.image_size: it takes no "
                         "pictures at a fixed size.")
    return int(vision["image_size"])


def image_tokens(config: Mapping[str, Any], width: int, height: int) -> ImageTokens:
    family = str(config.get("model_type", "")).lower()
    vision = config.get("vision_config")
    vision = vision if isinstance(vision, Mapping) else {}
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        return _qwen_vl(vision, width, height)
    if family == "gemma3":
        tokens = int(config.get("mm_tokens_per_image", 256))
        return ImageTokens(tokens + 2, f"Gemma 3: {tokens} soft tokens per image + 2 markers")
    if family in ("pixtral", "mistral3") or vision.get("model_type") == "pixtral":
        return _pixtral(config, vision, width, height)
    if family in ("internvl", "internvl_chat"):
        return _internvl_tokens(config, vision, width, height)
    if family == "llava":
        side = int(vision.get("image_size", 336)) // int(vision.get("patch_size", 14))
        return ImageTokens(side * side, f"LLaVA: ({side} patches)^2 per image, CLS dropped")
    raise InputError(f"Image tokens for model_type {family or 'unknown'!r} are not modelled; "
                     "--images works with Qwen2-VL/Qwen2.5-VL, Gemma 3, LLaVA, Pixtral / "
                     "Mistral 3 and InternVL configs (Llama 3.2 Vision sends images to cross-attention).")


def _qwen_vl(vision: Mapping[str, Any], width: int, height: int) -> ImageTokens:
    patch = int(vision.get("patch_size", 14))
    merge = int(vision.get("spatial_merge_size", 2))
    factor = patch * merge
    min_pixels, max_pixels = 56 * 56, factor * factor * 1280
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = math.floor(height / beta / factor) * factor
        w = math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    tokens = (h // factor) * (w // factor)
    return ImageTokens(tokens + 2, f"Qwen-VL: resized to {w}x{h}, one token per {factor} px "
                       f"block ({tokens}) + 2 markers")


def _pixtral(config: Mapping[str, Any], vision: Mapping[str, Any], width: int,
             height: int) -> ImageTokens:
    patch = int(vision.get("patch_size", 16))
    limit = int(vision.get("image_size", 1024))
    merge = int(config.get("spatial_merge_size", 1))
    ratio = max(width / limit, height / limit, 1.0)
    w, h = math.floor(width / ratio), math.floor(height / ratio)
    cell = patch * merge
    cols, rows = math.ceil(w / cell), math.ceil(h / cell)
    return ImageTokens(rows * cols + rows, f"Pixtral: {rows} rows × {cols} tokens of {cell} px "
                       f"+ {rows} row breaks")


def internvl_tiles(width: int, height: int, max_tiles: int = 12, tile: int = 448,
                   thumbnail: bool = True) -> tuple[int, int, int]:
    """(columns, rows, tiles incl. the thumbnail) InternVL's dynamic_preprocess cuts into."""
    ratios = sorted({(i, j) for n in range(1, max_tiles + 1) for i in range(1, n + 1)
                     for j in range(1, n + 1) if i * j <= max_tiles}, key=lambda r: r[0] * r[1])
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), math.inf
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best, best_diff = ratio, diff
        elif diff == best_diff and area > 0.5 * tile * tile * ratio[0] * ratio[1]:
            best = ratio
    tiles = best[0] * best[1]
    return best[0], best[1], tiles + (1 if thumbnail and tiles > 1 else 0)


def _internvl_tokens(config: Mapping[str, Any], vision: Mapping[str, Any], width: int,
                     height: int) -> ImageTokens:
    tile = _side(config.get("force_image_size") or vision.get("image_size", 448))
    patch = _side(vision.get("patch_size", 14))
    ratio = float(config.get("downsample_ratio", 0.5))
    per_tile = round((tile // patch) ** 2 * ratio * ratio)
    max_tiles = int(config.get("max_dynamic_patch", 12))
    thumbnail = bool(config.get("use_thumbnail", True))
    cols, rows, tiles = internvl_tiles(width, height, max_tiles, tile, thumbnail)
    extra = " + a thumbnail" if tiles > cols * rows else ""
    return ImageTokens(tiles * per_tile + 2, f"InternVL: {cols}x{rows} tiles of {tile} px{extra}, "
                       f"{per_tile} tokens each + 2 markers")


def pixtral_tower(config: Mapping[str, Any]) -> VisionTower | None:
    """Pixtral's ViT (Pixtral-12B, Mistral Small 3.x) at its largest picture, the image_size
    square (vision_config.image_size: 1024 px for Pixtral-12B, 1540 for Mistral Small 3.1):
    (image_size / patch_size)^2 patches; a SwiGLU MLP (gate, up and their product: 3 x ffn);
    None for other towers."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping) or str(vision.get("model_type", "")) != "pixtral":
        return None
    try:
        side, patch = _side(vision["image_size"]), _side(vision["patch_size"])
        hidden = int(vision["hidden_size"])
        return VisionTower(patches=(side // patch) ** 2, hidden=hidden,
                           ffn=int(vision.get("intermediate_size", 4 * hidden)),
                           heads=int(vision["num_attention_heads"]), side=side, ffn_copies=3.0)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
