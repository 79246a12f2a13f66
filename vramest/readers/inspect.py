"""One entry point for exact models: what a path holds, its parameter count and stored bytes.

Counting rules for quantized checkpoints, where stored tensors are not the model's weights:

* `params` counts LOGICAL weights: what the model has before packing. `weights_bytes` is the
  exact number of bytes the tensors take on disk (and, loaded as stored, in memory), including
  every scale, zero point and index tensor.
* GPTQ / AWQ: `*.qweight` is int32 holding 32/bits weights per element (8 for 4-bit), counted
  under "gptq-int4" / "awq-int4". The companion `qzeros`, `scales` and `g_idx` tensors add no
  parameters; their bytes are counted under the same label, so bytes / params of a label gives
  the effective bits per weight.
* bitsandbytes 4-bit: the weight is uint8 with two 4-bit values per byte ("bnb-nf4" or
  "bnb-fp4"); `absmax`, `quant_map`, `nested_*` and `quant_state.*` tensors are bytes only.
  bitsandbytes 8-bit: int8 weights ("bnb-int8") with `SCB` / `weight_format` bytes only.
* compressed-tensors packed integers (`weight_packed`, int32) count 32/num_bits weights per
  element; gpt-oss MXFP4 (`*_blocks`, uint8) counts two weights per byte ("mxfp4"), with its
  `*_scales` bytes only. FP8 checkpoints keep their dtype; `weight_scale(_inv)`,
  `input_scale` and zero points add bytes, not parameters.
* GGUF: the ggml block types already give logical element counts; dtypes are ggml type names.

Everything else counts one parameter per element under the stored dtype.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, field, frozen
from vramest.readers.folder import HUB_MANIFEST, contained, read_model_folder
from vramest.readers.gguf import GGUF_MAGIC, GGUFFile, gguf_to_hf_config, read_gguf
from vramest.readers.safetensors_header import SAFETENSORS_DTYPE_BITS
from vramest.readers.tensors import TensorInfo, TensorSet, component_of

if TYPE_CHECKING:
    from typing import Any

KINDS = ("safetensors-folder", "config-only", "safetensors-file", "gguf")
_SPLIT_GGUF = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
_MAX_GGUF_SPLITS = 1000

_ACCEPTED = (
    "a model folder with config.json and .safetensors weights, a config.json file, "
    "a .safetensors file or a .gguf file"
)


@frozen
class Inspection:
    """What a local model path holds.

    `params` / `weights_bytes` are None for a config-only path (no weights to count).
    `params_by_dtype` and `bytes_by_dtype` share labels (a stored dtype, or a quantization
    label such as "gptq-int4"); see the module docstring for how quantized tensors count.
    `config` is the Hugging Face config (for GGUF, translated from its metadata).
    """

    path: Path
    kind: str
    params: int | None
    weights_bytes: int | None
    params_by_dtype: dict[str, int] = field(default_factory=dict)
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    params_by_component: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    tensor_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "params": self.params,
            "weights_bytes": self.weights_bytes,
            "params_by_dtype": dict(self.params_by_dtype),
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "params_by_component": dict(self.params_by_component),
            "tensor_count": self.tensor_count,
            "quantization": self.quantization,
            "shape": self.config,
        }


def inspect_path(path: str | os.PathLike[str]) -> Inspection:
    """Read a model folder, config.json, .safetensors file or .gguf file and count it."""
    path = Path(path)
    try:
        return _inspect(path)
    except OSError as error:  # e.g. a folder we may not list
        raise InputError(
            f"{path} cannot be read ({error.strerror or error}): expected {_ACCEPTED}."
        ) from None


def _inspect(path: Path) -> Inspection:
    if not path.exists():
        raise InputError(f"{path} does not exist: expected {_ACCEPTED}.")
    if path.is_file():
        if path.suffix == ".gguf" or _starts_with_gguf_magic(path):
            return _inspect_gguf(path)
        if path.suffix == ".safetensors":
            folder = read_model_folder(path)
            assert folder.tensors is not None
            return _from_tensors(path, "safetensors-file", folder.tensors, {}, None)
        folder = read_model_folder(path)
        return _config_only(path, folder.config, folder.quantization_config)
    if path.is_dir():
        has_model_files = (
            (path / "config.json").is_file()
            or (path / HUB_MANIFEST).is_file()
            or any(path.glob("*.safetensors"))
        )
        ggufs = sorted(p for p in path.glob("*.gguf") if not p.name.startswith("mmproj"))
        if not has_model_files and ggufs:
            projectors = sorted(path.glob("mmproj*.gguf"))
            if len(projectors) > 1:
                raise InputError(f"{path} holds {len(projectors)} mmproj*.gguf projectors; keep "
                                 "the one llama-server is given (--mmproj) in the folder.")
            return _inspect_gguf(contained(path, _single_gguf(path, ggufs)),
                                 contained(path, projectors[0]) if projectors else None)
        folder = read_model_folder(path)
        if folder.tensors is None:
            return _config_only(path, folder.config, folder.quantization_config)
        return _from_tensors(
            path, "safetensors-folder", folder.tensors, folder.config, folder.quantization_config
        )
    raise InputError(f"{path} is neither a file nor a folder: expected {_ACCEPTED}.")


def _starts_with_gguf_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _single_gguf(folder: Path, ggufs: list[Path]) -> Path:
    firsts = [p for p in ggufs if _split_index(p.name) in (None, 1)]
    if len(firsts) == 1:
        return firsts[0]
    names = ", ".join(p.name for p in firsts[:4])
    raise InputError(f"{folder} holds several GGUF files ({names}): pass the one to inspect.")


def _split_index(name: str) -> int | None:
    match = _SPLIT_GGUF.match(name)
    return int(match.group("index")) if match else None


def _config_only(path: Path, config: dict[str, Any], quantization: dict | None) -> Inspection:
    return Inspection(path=path, kind="config-only", params=None, weights_bytes=None,
                      config=config, quantization=quantization)


# --- GGUF -----------------------------------------------------------------------------------


def _inspect_gguf(path: Path, projector: Path | None = None) -> Inspection:
    """A GGUF model; with `projector`, a multimodal projector file (mmproj-*.gguf) beside it,
    whose vision tower llama-server --mmproj loads on the GPU too: its v.* / mm.* tensors
    count as the model's vision tower."""
    gguf = read_gguf(path)
    tensors = _with_split_siblings(gguf)
    if projector is not None:
        extra = read_gguf(projector).tensors.tensors
        if any(not t.name.startswith(("v.", "mm.", "a.")) for t in extra):
            raise InputError(f"{projector} is named like a projector but holds language-model "
                             "tensors; give the model and its mmproj file in one folder.")
        tensors = TensorSet(tensors=(*tensors.tensors, *extra), metadata=tensors.metadata)
    config = gguf_to_hf_config(gguf)
    if tensors is not gguf.tensors:
        config["tie_word_embeddings"] = "output.weight" not in tensors.names()
    quantization = {"quant_method": "gguf", "file_type": gguf.file_type, "version": gguf.version}
    return _from_tensors(path, "gguf", tensors, config, quantization, gguf_types=True)


def _with_split_siblings(gguf: GGUFFile) -> TensorSet:
    """All tensors of a split GGUF model (name-00001-of-0000N.gguf), read from every part."""
    count = gguf.metadata.get("split.count")
    match = _SPLIT_GGUF.match(gguf.path.name)
    if type(count) is not int or count <= 1 or match is None:
        return gguf.tensors
    if count > _MAX_GGUF_SPLITS or int(match.group("count")) != count:
        raise InputError(f"{gguf.path} declares split.count {count}, which does not match its "
                         "file name: expected name-00001-of-0000N.gguf parts.")
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index in range(1, count + 1):
        part = gguf.path.with_name(f"{match.group('stem')}-{index:05d}-of-{count:05d}.gguf")
        if not part.is_file():
            raise InputError(f"{gguf.path} is part of a split GGUF model but {part.name} is "
                             "missing: keep all parts in one folder.")
        part_tensors = gguf.tensors if part == gguf.path else read_gguf(
            contained(gguf.path.parent, part)).tensors
        for tensor in part_tensors.tensors:
            if tensor.name in names:
                raise InputError(f"{part} repeats tensor {tensor.name[:200]!r} from another "
                                 "part: each tensor must be in exactly one part.")
            names.add(tensor.name)
            tensors.append(tensor)
    return TensorSet(tensors=tuple(tensors), metadata=gguf.tensors.metadata)


# --- counting -------------------------------------------------------------------------------

# Companion tensors that carry quantization state: suffix -> suffixes of the tensor they serve.
_AUX_OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (".qzeros", (".qweight",)),
    (".scales", (".qweight",)),
    (".g_idx", (".qweight",)),
    (".weight.absmax", (".weight",)),
    (".weight.quant_map", (".weight",)),
    (".weight.nested_absmax", (".weight",)),
    (".weight.nested_quant_map", (".weight",)),
    (".weight.quant_state.bitsandbytes__nf4", (".weight",)),
    (".weight.quant_state.bitsandbytes__fp4", (".weight",)),
    (".SCB", (".weight",)),
    (".weight_format", (".weight",)),
    (".weight_scale", (".weight", ".weight_packed")),
    (".weight_scale_inv", (".weight",)),
    (".weight_zero_point", (".weight", ".weight_packed")),
    (".weight_g_idx", (".weight_packed",)),
    (".weight_shape", (".weight_packed",)),
    (".input_scale", (".weight",)),
    ("_scales", ("_blocks",)),
)


@frozen
class CountedTensor:
    """One tensor as counted: its label, logical parameters, stored bytes and component."""

    label: str
    params: int
    nbytes: int
    component: str


def _storage_bits(tensor: TensorInfo) -> int:
    return SAFETENSORS_DTYPE_BITS.get(tensor.dtype, 8)


def _int_setting(settings: dict[str, Any] | None, *keys: str, default: int) -> int:
    for key in keys:
        value = (settings or {}).get(key)
        if type(value) is int and 1 <= value <= 32:
            return value
    return default


def _packed_bits(quantization: dict[str, Any] | None) -> int:
    """num_bits of a compressed-tensors config (first weights group), default 4."""
    groups = (quantization or {}).get("config_groups")
    if isinstance(groups, dict):
        for group in groups.values():
            weights = group.get("weights") if isinstance(group, dict) else None
            if isinstance(weights, dict):
                return _int_setting(weights, "num_bits", default=4)
    return 4


def _label_of_owner(tensor: TensorInfo, by_name: dict[str, TensorInfo],
                    quantization: dict[str, Any] | None) -> tuple[str, int]:
    """(label, logical params) of a tensor that is not a companion of another."""
    name = tensor.name
    method = str((quantization or {}).get("quant_method", "")).lower()
    if name.endswith(".qweight"):
        bits = _int_setting(quantization, "bits", "w_bit", default=4)
        prefix = "awq" if method == "awq" else "gptq" if method in ("", "gptq") else method
        return f"{prefix}-int{bits}", tensor.numel * _storage_bits(tensor) // bits
    if name.endswith(".weight_packed"):
        bits = _packed_bits(quantization)
        return f"compressed-int{bits}", tensor.numel * _storage_bits(tensor) // bits
    if name.endswith("_blocks") and name[: -len("_blocks")] + "_scales" in by_name:
        return "mxfp4", tensor.numel * 2
    if name.endswith(".weight"):
        for quant_type in ("nf4", "fp4"):
            if f"{name}.quant_state.bitsandbytes__{quant_type}" in by_name:
                return f"bnb-{quant_type}", tensor.numel * 2
        if f"{name}.absmax" in by_name:
            quant_type = str((quantization or {}).get("bnb_4bit_quant_type", "nf4")).lower()
            return f"bnb-{quant_type}", tensor.numel * 2
        if name[: -len(".weight")] + ".SCB" in by_name:
            return "bnb-int8", tensor.numel
    return tensor.dtype, tensor.numel


def _owner_of(tensor: TensorInfo, by_name: dict[str, TensorInfo]) -> TensorInfo | None:
    for suffix, owner_suffixes in _AUX_OWNERS:
        if tensor.name.endswith(suffix):
            stem = tensor.name[: -len(suffix)]
            for owner_suffix in owner_suffixes:
                owner = by_name.get(stem + owner_suffix)
                if owner is not None and owner is not tensor:
                    return owner
    return None


def count_tensors(tensors: TensorSet, quantization: dict[str, Any] | None,
                  *, gguf_types: bool = False) -> list[CountedTensor]:
    """Each tensor's label, logical parameters, stored bytes and component."""
    if gguf_types:
        return [
            CountedTensor(t.dtype, t.numel, t.nbytes, component_of(t.name))
            for t in tensors.tensors
        ]
    by_name = {tensor.name: tensor for tensor in tensors.tensors}
    counted: list[CountedTensor] = []
    for tensor in tensors.tensors:
        owner = _owner_of(tensor, by_name)
        if owner is not None:
            label, _ = _label_of_owner(owner, by_name, quantization)
            counted.append(CountedTensor(label, 0, tensor.nbytes, component_of(owner.name)))
        else:
            label, params = _label_of_owner(tensor, by_name, quantization)
            counted.append(CountedTensor(label, params, tensor.nbytes, component_of(tensor.name)))
    return counted


def _from_tensors(path: Path, kind: str, tensors: TensorSet, config: dict[str, Any],
                  quantization: dict[str, Any] | None, *, gguf_types: bool = False) -> Inspection:
    counted = count_tensors(tensors, quantization, gguf_types=gguf_types)
    params_by_dtype: dict[str, int] = {}
    bytes_by_dtype: dict[str, int] = {}
    params_by_component: dict[str, int] = {}
    for item in counted:
        params_by_dtype[item.label] = params_by_dtype.get(item.label, 0) + item.params
        bytes_by_dtype[item.label] = bytes_by_dtype.get(item.label, 0) + item.nbytes
        params_by_component[item.component] = (
            params_by_component.get(item.component, 0) + item.params
        )
    return Inspection(
        path=path,
        kind=kind,
        params=sum(item.params for item in counted),
        weights_bytes=tensors.total_bytes,
        params_by_dtype=params_by_dtype,
        bytes_by_dtype=bytes_by_dtype,
        params_by_component=params_by_component,
        config=config,
        quantization=quantization,
        tensor_count=len(tensors.tensors),
    )


__all__ = ["KINDS", "CountedTensor", "Inspection", "count_tensors", "inspect_path"]
