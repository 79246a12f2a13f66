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
- Llama 3.2 Vision (mllama): one <|image|> token in the text; the picture's tiles reach the
  cross-attention layers, which keep their own KV (not modelled here: refused).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramest.errors import InputError

MAX_IMAGES = 10_000
MAX_SIDE = 100_000


@dataclass(frozen=True)
class ImageRequest:
    count: int
    width: int
    height: int


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class VisionTower:
    """A ViT that takes every picture at one square size (SigLIP in Gemma 3, CLIP in LLaVA):
    what its forward holds depends on its patches per picture, not on the picture given."""

    patches: int  # per picture: (image_size / patch_size)^2
    hidden: int
    ffn: int
    heads: int
    side: int  # pixels


def fixed_size_tower(config: Mapping[str, Any]) -> VisionTower | None:
    """The vision tower of a Gemma 3 or LLaVA config; None for towers whose patches follow the
    picture's size (Qwen-VL, Pixtral), or where the config does not say."""
    family = str(config.get("model_type", "")).lower()
    vision = config.get("vision_config")
    if family not in ("gemma3", "llava") or not isinstance(vision, Mapping):
        return None
    try:
        side, patch = int(vision["image_size"]), int(vision["patch_size"])
        hidden = int(vision["hidden_size"])
        return VisionTower(patches=(side // patch) ** 2, hidden=hidden,
                           ffn=int(vision.get("intermediate_size", 4 * hidden)),
                           heads=int(vision["num_attention_heads"]), side=side)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


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
    if family == "llava":
        side = int(vision.get("image_size", 336)) // int(vision.get("patch_size", 14))
        return ImageTokens(side * side, f"LLaVA: ({side} patches)^2 per image, CLS dropped")
    raise InputError(f"Image tokens for model_type {family or 'unknown'!r} are not modelled; "
                     "--images works with Qwen2-VL/Qwen2.5-VL, Gemma 3, LLaVA and Pixtral / "
                     "Mistral 3 configs (Llama 3.2 Vision sends images to cross-attention).")


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
