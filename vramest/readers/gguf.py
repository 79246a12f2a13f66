"""Read a GGUF file's metadata and tensor directory, never its tensor data.

GGUF (versions 2 and 3, little-endian):

    "GGUF"  uint32 version  uint64 tensor_count  uint64 kv_count
    kv_count x (string key, uint32 value_type, value)
    tensor_count x (string name, uint32 n_dims, n_dims x uint64 dim, uint32 ggml_type,
                    uint64 offset)
    padding to `general.alignment` (default 32), then the tensor data

Strings are a uint64 byte length followed by UTF-8 bytes; arrays are a uint32 item type, a
uint64 count and the items. Every count and length is checked against the bytes left in the
file before it is used, so a hostile file cannot make us allocate or loop beyond its size.
"""

from __future__ import annotations

import io
import math
import os
import struct
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.readers.tensors import TensorInfo, TensorSet

if TYPE_CHECKING:
    from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_STRING_BYTES = 1024 * 1024
MAX_DIMS = 8
# Arrays longer than this are summarised (type, length, first items) instead of kept whole.
MAX_KEPT_ARRAY_ITEMS = 1024
KEPT_HEAD_ITEMS = 8
# No real file has more items in one array (vocabularies are a few hundred thousand tokens);
# the cap keeps a hostile file from making us loop for minutes.
MAX_ARRAY_ITEMS = 1 << 24
MAX_ARRAY_NESTING = 4
# What the metadata kept in memory may cost in all (arrays past MAX_KEPT_ARRAY_ITEMS are not
# kept). Real files keep well under 1 MiB (a chat template is the largest value); without a
# total, a 100 MiB file of 1 MiB strings and 1024-item arrays took 1 GB of memory.
MAX_KEPT_METADATA_BYTES = 32 * 1024 * 1024
_PYTHON_OBJECT_BYTES = 48  # a kept value's own overhead, roughly (a str header, an int, a slot)
_ACCEPTED = "a GGUF file of version 2 or 3 (little-endian), as written by llama.cpp"

# ggml tensor types: id -> (name, elements per block, bytes per block). Facts from ggml's type
# traits; the block layouts are the block_* structs (256-element super-blocks for the k- and
# i-quants).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}
GGML_TYPE_BLOCKS: dict[str, tuple[int, int]] = {
    name: (block, size) for name, block, size in GGML_TYPES.values()
}

# llama.cpp's llama_ftype values, stored as general.file_type.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1",
    4: "MOSTLY_Q4_1_SOME_F16", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1",
    10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L",
    14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M",
    18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS", 20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S",
    22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS", 24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL",
    26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M", 28: "MOSTLY_IQ2_S", 29: "MOSTLY_IQ2_M",
    30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M", 32: "MOSTLY_BF16", 33: "MOSTLY_Q4_0_4_4",
    34: "MOSTLY_Q4_0_4_8", 35: "MOSTLY_Q4_0_8_8", 36: "MOSTLY_TQ1_0", 37: "MOSTLY_TQ2_0",
    38: "MOSTLY_MXFP4_MOE", 39: "MOSTLY_NVFP4", 40: "MOSTLY_Q1_0", 1024: "GUESSED",
}

# GGUF metadata value types: id -> (name, struct format or None for string/array).
VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("UINT8", "<B"), 1: ("INT8", "<b"), 2: ("UINT16", "<H"), 3: ("INT16", "<h"),
    4: ("UINT32", "<I"), 5: ("INT32", "<i"), 6: ("FLOAT32", "<f"), 7: ("BOOL", "<B"),
    8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<Q"), 11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7
# Smallest encoding of one item of each type, to bound counts by the bytes left.
_MIN_ITEM_BYTES = {8: 8, 9: 12}

# Smallest encodings, for bounding the declared counts.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8


@frozen
class GGUFFile:
    """A GGUF file's header.

    `metadata` maps each key to a Python value; arrays longer than MAX_KEPT_ARRAY_ITEMS are
    summarised as {"type": item type name, "length": n, "head": first items}. Tensor shapes are
    row-major (GGUF stores dimensions innermost first; they are reversed here), and each
    tensor's dtype is its ggml type name ("Q4_K", "F16", ...).
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: TensorSet
    alignment: int
    data_offset: int
    file_type: str | None

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None


class _Cursor:
    """Bounded little-endian reads from a file, with the error messages of this format."""

    def __init__(self, handle: BinaryIO, size: int, shown: str) -> None:
        self.handle = handle
        self.size = size
        self.shown = shown
        self.position = 0
        self.kept = 0  # MAX_KEPT_METADATA_BYTES's tally

    @property
    def remaining(self) -> int:
        return self.size - self.position

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.shown} {what}: expected {_ACCEPTED}.")

    def read(self, count: int) -> bytes:
        if count > self.remaining:
            raise self.fail(f"is truncated at byte {self.position} (needs {count} more bytes)")
        data = self.handle.read(count)
        if len(data) != count:
            raise self.fail(f"is truncated at byte {self.position}")
        self.position += count
        return data

    def skip(self, count: int) -> None:
        if count > self.remaining:
            raise self.fail(f"is truncated at byte {self.position} (needs {count} more bytes)")
        self.handle.seek(count, io.SEEK_CUR)
        self.position += count

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        return int(self.unpack("<I"))

    def u64(self) -> int:
        return int(self.unpack("<Q"))

    def string_length(self, what: str) -> int:
        length = self.u64()
        if length > MAX_STRING_BYTES:
            raise self.fail(f"has a {length}-byte {what}, over the 1 MiB limit for strings")
        return length

    def keep(self, nbytes: int) -> None:
        self.kept += nbytes + _PYTHON_OBJECT_BYTES
        if self.kept > MAX_KEPT_METADATA_BYTES:
            raise self.fail(f"holds more than {MAX_KEPT_METADATA_BYTES // (1024 * 1024)} MiB of "
                            "metadata outside its long arrays, far more than any model's")

    def string(self, what: str) -> str:
        data = self.read(self.string_length(what))
        self.keep(len(data))
        return data.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Skip `count` strings, reading the file in large chunks (vocabularies are long)."""
        chunk = b""
        at = 0  # position of the next string within `chunk`
        for _ in range(count):
            if at + 8 > len(chunk):
                chunk = self._refill(chunk, at, 8)
                at = 0
            (length,) = struct.unpack_from("<Q", chunk, at)
            if length > MAX_STRING_BYTES:
                raise self.fail(f"has a {length}-byte metadata string, over the 1 MiB limit")
            at += 8 + length
            if at > len(chunk):
                self.skip(at - len(chunk))
                chunk, at = b"", 0
        # Give back what was read ahead but not used.
        unused = len(chunk) - at
        self.handle.seek(-unused, io.SEEK_CUR)
        self.position -= unused

    def _refill(self, chunk: bytes, at: int, needed: int) -> bytes:
        rest = chunk[at:]
        more = min(max(1 << 20, needed), self.remaining)
        if len(rest) + more < needed:
            raise self.fail(f"is truncated at byte {self.position}")
        return rest + self.read(more)


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Read the metadata and tensor directory of a GGUF file (no tensor data)."""
    path = Path(path)
    shown = str(path)
    try:
        with path.open("rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            handle = io.BufferedReader(raw, buffer_size=1 << 20)
            return _read(_Cursor(handle, size, shown), path)
    except OSError as error:
        reason = error.strerror or error
        raise InputError(f"{shown} cannot be read ({reason}): expected {_ACCEPTED}.") from None


def _read(cursor: _Cursor, path: Path) -> GGUFFile:
    magic = cursor.read(4) if cursor.remaining >= 4 else b""
    if magic != GGUF_MAGIC:
        raise cursor.fail("does not start with the GGUF magic bytes")
    version_bytes = cursor.read(4)
    version = struct.unpack("<I", version_bytes)[0]
    if version not in SUPPORTED_VERSIONS:
        if struct.unpack(">I", version_bytes)[0] in SUPPORTED_VERSIONS:
            raise cursor.fail("is a big-endian GGUF file, which is not supported")
        raise cursor.fail(f"is GGUF version {version}, which is not supported")
    tensor_count = cursor.u64()
    kv_count = cursor.u64()
    if kv_count > cursor.remaining // _MIN_KV_BYTES:
        raise cursor.fail(f"declares {kv_count} metadata entries, more than the file can hold")
    if tensor_count > cursor.remaining // _MIN_TENSOR_INFO_BYTES:
        raise cursor.fail(f"declares {tensor_count} tensors, more than the file can hold")

    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string("metadata key")
        value_type = cursor.u32()
        metadata[key] = _read_value(cursor, value_type, depth=0)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise cursor.fail("has a general.alignment that is not a positive power of two")

    entries: list[tuple[str, tuple[int, ...], str, int, int]] = []
    for _ in range(tensor_count):
        entries.append(_read_tensor_info(cursor))
    data_offset = _align(cursor.position, alignment)
    data_size = cursor.size - data_offset

    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for name, shape, type_name, nbytes, offset in entries:
        if name in seen:
            raise cursor.fail(f"lists tensor {name[:200]!r} twice")
        seen.add(name)
        if offset % alignment:
            raise cursor.fail(
                f"places tensor {name[:200]!r} at an offset not aligned to {alignment}"
            )
        if offset + nbytes > data_size:
            raise cursor.fail(
                f"is truncated or corrupt: tensor {name[:200]!r} ends past the end of the file"
            )
        tensors.append(TensorInfo(name=name, dtype=type_name, shape=shape, nbytes=nbytes))

    file_type_value = metadata.get("general.file_type")
    file_type = None
    if type(file_type_value) is int:
        file_type = FILE_TYPE_NAMES.get(file_type_value, f"UNKNOWN_{file_type_value}")
    string_metadata = {key: value for key, value in metadata.items() if isinstance(value, str)}
    return GGUFFile(
        path=path,
        version=version,
        metadata=metadata,
        tensors=TensorSet(tensors=tuple(tensors), metadata=string_metadata),
        alignment=alignment,
        data_offset=data_offset,
        file_type=file_type,
    )


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _read_value(cursor: _Cursor, value_type: int, depth: int) -> Any:
    if value_type not in VALUE_TYPES:
        raise cursor.fail(f"has a metadata value of unknown type {value_type}")
    if value_type == _STRING:
        return cursor.string("metadata string")
    if value_type == _ARRAY:
        return _read_array(cursor, depth)
    fmt = VALUE_TYPES[value_type][1]
    assert fmt is not None
    cursor.keep(0)
    value = cursor.unpack(fmt)
    return bool(value) if value_type == _BOOL else value


def _read_array(cursor: _Cursor, depth: int) -> Any:
    if depth >= MAX_ARRAY_NESTING:
        raise cursor.fail(f"nests metadata arrays more than {MAX_ARRAY_NESTING} deep")
    item_type = cursor.u32()
    if item_type not in VALUE_TYPES:
        raise cursor.fail(f"has a metadata array of unknown item type {item_type}")
    count = cursor.u64()
    fmt = VALUE_TYPES[item_type][1]
    item_bytes = struct.calcsize(fmt) if fmt else _MIN_ITEM_BYTES[item_type]
    if count > cursor.remaining // item_bytes:
        raise cursor.fail(
            f"declares a metadata array of {count} items, more than the file can hold"
        )
    if count > MAX_ARRAY_ITEMS:
        raise cursor.fail(
            f"has a metadata array of {count} items, over the limit of {MAX_ARRAY_ITEMS}"
        )
    keep_all = count <= MAX_KEPT_ARRAY_ITEMS
    kept = count if keep_all else KEPT_HEAD_ITEMS
    items = [_read_value(cursor, item_type, depth + 1) for _ in range(kept)]
    if keep_all:
        return items
    # Skip the rest without keeping it: fixed-size items in one seek, strings one by one.
    rest = count - kept
    if fmt is not None:
        cursor.skip(rest * item_bytes)
    elif item_type == _STRING:
        cursor.skip_strings(rest)
    else:
        for _ in range(rest):
            _read_array(cursor, depth + 1)
    return {"type": VALUE_TYPES[item_type][0], "length": count, "head": items}


def _read_tensor_info(cursor: _Cursor) -> tuple[str, tuple[int, ...], str, int, int]:
    name = cursor.string("tensor name")
    n_dims = cursor.u32()
    if n_dims > MAX_DIMS:
        raise cursor.fail(f"gives tensor {name[:200]!r} {n_dims} dimensions, more than {MAX_DIMS}")
    dims = [cursor.u64() for _ in range(n_dims)]
    type_id = cursor.u32()
    offset = cursor.u64()
    if type_id not in GGML_TYPES:
        raise cursor.fail(f"gives tensor {name[:200]!r} the unknown ggml type {type_id}")
    type_name, block_elements, block_bytes = GGML_TYPES[type_id]
    if dims and dims[0] % block_elements:
        raise cursor.fail(
            f"gives tensor {name[:200]!r} rows of {dims[0]} elements, not a multiple of the "
            f"{block_elements}-element blocks of {type_name}"
        )
    numel = 0 if 0 in dims else math.prod(dims)
    nbytes = numel // block_elements * block_bytes
    return name, tuple(reversed(dims)), type_name, nbytes, offset


# --- GGUF metadata -> Hugging Face config.json ----------------------------------------------

# general.architecture -> Hugging Face model_type. Mixtral-style files use "llama" with
# experts and are mapped to "mixtral" below.
ARCHITECTURE_TO_MODEL_TYPE: dict[str, str] = {
    "llama": "llama", "mistral": "llama", "mistral3": "mistral", "llama4": "llama4_text",
    "qwen": "qwen", "qwen2": "qwen2", "qwen2moe": "qwen2_moe", "qwen3": "qwen3",
    "qwen3moe": "qwen3_moe", "qwen3next": "qwen3_next", "qwen35": "qwen3_5_text",
    "qwen35moe": "qwen3_5_moe_text",
    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text", "gemma3n": "gemma3n_text",
    "gpt2": "gpt2", "gptj": "gptj", "gptneox": "gpt_neox", "falcon": "falcon", "bloom": "bloom",
    "mpt": "mpt", "starcoder": "gpt_bigcode", "starcoder2": "starcoder2",
    "phi2": "phi", "phi3": "phi3", "phimoe": "phimoe",
    "deepseek": "deepseek", "deepseek2": "deepseek_v3", "gpt-oss": "gpt_oss",
    "command-r": "cohere", "cohere2": "cohere2", "dbrx": "dbrx",
    "olmo": "olmo", "olmo2": "olmo2", "olmoe": "olmoe",
    "granite": "granite", "granitemoe": "granitemoe", "granitehybrid": "granitemoehybrid",
    "stablelm": "stablelm", "internlm2": "internlm2", "minicpm": "minicpm",
    "minicpm3": "minicpm3", "exaone": "exaone", "exaone4": "exaone4",
    "glm4": "glm4", "glm4moe": "glm4_moe", "chatglm": "chatglm", "nemotron": "nemotron",
    "mamba": "mamba", "mamba2": "mamba2", "jamba": "jamba", "falcon-h1": "falcon_h1",
    "smollm3": "smollm3", "hunyuan-moe": "hunyuan_v1_moe", "hunyuan-dense": "hunyuan_v1_dense",
    "ernie4_5": "ernie4_5", "ernie4_5-moe": "ernie4_5_moe", "seed_oss": "seed_oss",
    "lfm2": "lfm2", "arcee": "arcee", "apertus": "apertus", "bailingmoe": "bailing_moe",
    "dots1": "dots1", "openelm": "openelm", "arctic": "arctic", "plamo": "plamo",
    "orion": "orion", "xverse": "xverse", "baichuan": "baichuan", "bitnet": "bitnet",
    "t5": "t5", "bert": "bert", "nomic-bert": "nomic_bert",
}
# Hugging Face's name for the routed-expert count differs by family; num_local_experts is
# always set, and these get their own key as well.
_EXPERT_COUNT_ALIASES: dict[str, str] = {
    "qwen2_moe": "num_experts", "qwen3_moe": "num_experts", "qwen3_next": "num_experts",
    "qwen3_5_moe_text": "num_experts",
    "olmoe": "num_experts", "granitemoe": "num_local_experts", "deepseek_v3": "n_routed_experts",
    "deepseek": "n_routed_experts", "glm4_moe": "n_routed_experts", "dots1": "n_routed_experts",
}


def _largest(value: Any) -> int | None:
    """An integer, or the largest of a per-layer list of integers."""
    if type(value) is int:
        return value
    if isinstance(value, list) and value and all(type(item) is int for item in value):
        return max(value)
    return None


def _positive(value: Any) -> int | None:
    number = _largest(value)
    return number if number is not None and number > 0 else None


def gguf_to_hf_config(gguf: GGUFFile) -> dict[str, Any]:
    """The model's shape as a Hugging Face config.json dict, from a GGUF file's metadata.

    Only keys whose values the file states (or its tensors show) are set. Per-layer arrays
    (head_count_kv of hybrid models, feed_forward_length of some families) map to their largest
    value, and the per-layer list is kept as `num_key_value_heads_per_layer` /
    `intermediate_size_per_layer`. For MLA models (DeepSeek) rope.dimension_count becomes
    qk_rope_head_dim; otherwise a rope dimension smaller than the head becomes
    partial_rotary_factor.
    """
    meta = gguf.metadata
    arch = gguf.architecture
    if arch is None:
        raise InputError(
            f"{gguf.path} has no general.architecture string, so its model shape is unknown: "
            f"expected {_ACCEPTED}."
        )

    def get(key: str) -> Any:
        return meta.get(f"{arch}.{key}")

    model_type = ARCHITECTURE_TO_MODEL_TYPE.get(arch, arch.replace("-", "_"))
    experts = _positive(get("expert_count"))
    if model_type == "llama" and experts:
        model_type = "mixtral"
    config: dict[str, Any] = {"model_type": model_type, "gguf_architecture": arch}

    def put(hf_key: str, value: Any) -> None:
        if value is not None:
            config[hf_key] = value

    hidden = _positive(get("embedding_length"))
    heads = _positive(get("attention.head_count"))
    put("hidden_size", hidden)
    put("num_hidden_layers", _largest(get("block_count")))
    put("intermediate_size", _positive(get("feed_forward_length")))
    if isinstance(get("feed_forward_length"), list):
        put("intermediate_size_per_layer", list(get("feed_forward_length")))
    put("num_attention_heads", heads)
    kv_heads = get("attention.head_count_kv")
    put("num_key_value_heads", _positive(kv_heads))
    if isinstance(kv_heads, list) and _positive(kv_heads) is not None:
        config["num_key_value_heads_per_layer"] = list(kv_heads)

    kv_lora_rank = _positive(get("attention.kv_lora_rank"))
    rope_dims = _positive(get("rope.dimension_count"))
    key_length = (
        _positive(get("attention.key_length_mla")) or _positive(get("attention.key_length"))
    )
    value_length = (
        _positive(get("attention.value_length_mla")) or _positive(get("attention.value_length"))
    )
    if kv_lora_rank is not None:
        put("kv_lora_rank", kv_lora_rank)
        put("q_lora_rank", _positive(get("attention.q_lora_rank")))
        put("qk_rope_head_dim", rope_dims)
        if key_length is not None and rope_dims is not None and key_length > rope_dims:
            config["qk_nope_head_dim"] = key_length - rope_dims
        put("v_head_dim", value_length)
        put("head_dim", key_length)
    else:
        head_dim = key_length
        if head_dim is None and hidden and heads and hidden % heads == 0:
            head_dim = hidden // heads
        put("head_dim", head_dim)
        if value_length is not None and value_length != head_dim:
            config["v_head_dim"] = value_length
        if rope_dims is not None and head_dim and rope_dims < head_dim:
            config["partial_rotary_factor"] = rope_dims / head_dim

    put("max_position_embeddings", _positive(get("context_length")))
    put("sliding_window", _positive(get("attention.sliding_window")))
    if experts:
        config["num_local_experts"] = experts
        alias = _EXPERT_COUNT_ALIASES.get(model_type)
        if alias:
            config[alias] = experts
    put("num_experts_per_tok", _positive(get("expert_used_count")))
    put("moe_intermediate_size", _positive(get("expert_feed_forward_length")))
    put("shared_expert_intermediate_size", _positive(get("expert_shared_feed_forward_length")))
    put("n_shared_experts", _positive(get("expert_shared_count")))
    put("first_k_dense_replace", _largest(get("leading_dense_block_count")))
    put("rope_theta", _number(get("rope.freq_base")))
    put("rms_norm_eps", _number(get("attention.layer_norm_rms_epsilon")))
    put("vocab_size", _vocab_size(gguf, arch))
    config["tie_word_embeddings"] = "output.weight" not in gguf.tensors.names()
    if model_type in _GATED_DELTANET:
        _put_gated_deltanet(get, put)
    return config


# Gated-DeltaNet hybrids: llama.cpp's converter writes the DeltaNet geometry as SSM keys
# (convert_hf_to_gguf.py Qwen3NextModel.set_gguf_parameters: ssm.conv_kernel =
# linear_conv_kernel_dim, ssm.state_size = linear_key_head_dim, ssm.group_count =
# linear_num_key_heads, ssm.time_step_rank = linear_num_value_heads, ssm.inner_size =
# linear_value_head_dim x linear_num_value_heads, full_attention_interval)
_GATED_DELTANET = frozenset({"qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"})


def _put_gated_deltanet(get: Any, put: Any) -> None:
    value_heads = _positive(get("ssm.time_step_rank"))
    inner = _positive(get("ssm.inner_size"))
    put("linear_conv_kernel_dim", _positive(get("ssm.conv_kernel")))
    put("linear_key_head_dim", _positive(get("ssm.state_size")))
    put("linear_num_key_heads", _positive(get("ssm.group_count")))
    put("linear_num_value_heads", value_heads)
    if value_heads and inner and inner % value_heads == 0:
        put("linear_value_head_dim", inner // value_heads)
    put("full_attention_interval", _positive(get("full_attention_interval")))
    # llama.cpp keeps the recurrent states in f32 (llama-memory-recurrent.cpp)
    put("mamba_ssm_dtype", "float32")


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _vocab_size(gguf: GGUFFile, arch: str) -> int | None:
    for tensor in gguf.tensors.tensors:
        if tensor.name == "token_embd.weight" and len(tensor.shape) == 2:
            return tensor.shape[0]
    declared = _positive(gguf.metadata.get(f"{arch}.vocab_size"))
    if declared is not None:
        return declared
    tokens = gguf.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list):
        return len(tokens)
    if isinstance(tokens, dict) and type(tokens.get("length")) is int:
        return int(tokens["length"])
    return None
