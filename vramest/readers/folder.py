"""Read a Hugging Face model folder: config.json plus the headers of its safetensors shards.

Nothing is executed (no trust_remote_code) and nothing is unpickled: a folder whose weights
are only PyTorch pickles (.bin, .pt, .pth, .ckpt) is refused. Shards come from
`model.safetensors.index.json` when present (names must stay inside the folder), else from
every `*.safetensors` file in the folder. No file is read whose real path is outside the
folder (a symbolic link, or a shard name through a linked sub-folder), except the `blobs`
folder that a Hugging Face cache snapshot's links point into.

Folders written by `vramest.readers.hub` hold header-only copies of the shards,
`<shard>.header`, and a `vramest-hub.json` manifest with each shard's real size; those are
read as if the full shard were there.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from vramest.errors import InputError
from vramest.files import parse_json, read_bytes
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.readers.safetensors_header import read_safetensors_header
from vramest.readers.tensors import TensorInfo, TensorSet

if TYPE_CHECKING:
    from typing import Any

MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_SHARDS = 100_000
INDEX_FILE = "model.safetensors.index.json"
HUB_MANIFEST = "vramest-hub.json"
HEADER_SUFFIX = ".header"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_ACCEPTED = (
    "a model folder with config.json and .safetensors weights, a config.json file, "
    "a .safetensors file or a .gguf file"
)


@frozen
class ModelFolder:
    """What a model folder says about the model.

    `config` is config.json as a dict ({} when only weights were given), `tensors` the union
    of all shards (None when there are no weights, e.g. a bare config.json), and
    `quantization_config` the checkpoint's quantization settings (config.json's
    quantization_config, or quantize_config.json of older GPTQ checkpoints).
    """

    path: Path
    config: dict[str, Any]
    tensors: TensorSet | None
    quantization_config: dict[str, Any] | None


def read_json_object(path: Path, *, what: str = "JSON file", shown: str | None = None) -> dict:
    """A size-bounded JSON file that must hold an object."""
    shown = shown or str(path)
    value = parse_json(read_bytes(path, what=f"The {what}", limit=MAX_JSON_BYTES),
                       what=f"{shown} (expected a {what})")
    if not isinstance(value, dict):
        raise InputError(f"{shown} holds JSON that is not an object: expected a {what}.")
    return value


def contained(folder: Path, path: Path) -> Path:
    """`path`, refused when its real location is outside `folder` (through any link). A Hugging
    Face cache snapshot (`models--org--name/snapshots/REV/`) links its files into the repo's
    `blobs/`, which is allowed."""
    root = folder.resolve()
    real = path.resolve()
    roots = [root]
    if root.parent.name == "snapshots":
        roots.append(root.parent.parent / "blobs")
    if not any(real == r or r in real.parents for r in roots):
        raise InputError(f"{folder}: {path.name[:200]} links outside the model folder, which is "
                         "never followed; copy the file into the folder.")
    return path


def read_model_folder(path: str | os.PathLike[str]) -> ModelFolder:
    """Read a model folder, a config.json file or a single .safetensors file."""
    path = Path(path)
    try:
        return _read_path(path)
    except OSError as error:  # e.g. a folder we may not list
        raise InputError(
            f"{path} cannot be read ({error.strerror or error}): expected {_ACCEPTED}."
        ) from None


def _read_path(path: Path) -> ModelFolder:
    if path.is_dir():
        return _read_directory(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            tensors = read_safetensors_header(path)
            return ModelFolder(path=path, config={}, tensors=tensors, quantization_config=None)
        if path.suffix == ".json":
            config = read_json_object(path, what="Hugging Face config.json")
            return ModelFolder(
                path=path, config=config, tensors=None,
                quantization_config=_quantization_of(config, path.parent, sibling_files=False),
            )
        if path.suffix in PICKLE_SUFFIXES:
            raise InputError(
                f"{path} is a PyTorch pickle, which vramest never loads: only safetensors and "
                "GGUF weights are read, or pass the model's config.json."
            )
        raise InputError(f"{path} is not a file vramest reads: expected {_ACCEPTED}.")
    raise InputError(f"{path} does not exist: expected {_ACCEPTED}.")


def _read_directory(folder: Path) -> ModelFolder:
    config_path = folder / "config.json"
    config = (
        read_json_object(contained(folder, config_path), what="Hugging Face config.json")
        if config_path.is_file()
        else None
    )
    manifest = _read_manifest(folder)
    shards = _shard_names(folder, manifest)
    if not shards:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise InputError(
                f"{folder} holds only PyTorch pickle weights ({pickles[0]}), which vramest never "
                "loads: only safetensors and GGUF weights are read, or pass its config.json alone."
            )
        if config is None:
            raise InputError(f"{folder} has neither config.json nor weights: expected {_ACCEPTED}.")
        return ModelFolder(
            path=folder, config=config, tensors=None,
            quantization_config=_quantization_of(config, folder, sibling_files=True),
        )
    tensors = _read_shards(folder, shards, manifest)
    config = config or {}
    return ModelFolder(
        path=folder, config=config, tensors=tensors,
        quantization_config=_quantization_of(config, folder, sibling_files=True),
    )


def _read_manifest(folder: Path) -> dict[str, int] | None:
    """Shard name -> real file size, from a hub cache folder's manifest (None elsewhere)."""
    manifest_path = folder / HUB_MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = read_json_object(contained(folder, manifest_path), what="vramest hub cache manifest")
    sizes = manifest.get("shards", {})
    if not isinstance(sizes, dict) or not all(
        isinstance(name, str) and type(size) is int and size >= 0 for name, size in sizes.items()
    ):
        raise InputError(
            f"{manifest_path} is corrupt: expected a vramest hub cache manifest; "
            "delete the folder to fetch it again."
        )
    for name in sizes:
        check_shard_name(name, str(manifest_path))
    return dict(sizes)


def check_shard_name(name: Any, source: str) -> str:
    """A shard name from an index (`source` names it), refused unless it stays in the folder."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise InputError(f"{source} names a shard {str(name)[:200]!r} that is not a plain "
                         "relative file name, as the index format requires.")
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ":" in parts[0] or ".." in parts:
        raise InputError(f"{source} names a shard {name[:200]!r} outside the model folder; "
                         "shard names must be file names inside the folder.")
    return name


def _shard_names(folder: Path, manifest: dict[str, int] | None) -> list[str]:
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        index = read_json_object(contained(folder, index_path),
                                 what="safetensors index (with a weight_map object)")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(
                f"{index_path} has no weight_map object, which a safetensors index must have."
            )
        names: dict[str, None] = {}
        for shard in weight_map.values():
            names[check_shard_name(shard, str(index_path))] = None
            if len(names) > MAX_SHARDS:
                raise InputError(f"{index_path} names more than {MAX_SHARDS} shards.")
        return list(names)
    if manifest is not None:
        return sorted(manifest)
    found = sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())
    # Mistral repositories ship consolidated.safetensors beside the transformers shards with
    # the same weights under other names; count them once.
    preferred = [name for name in found if not name.startswith("consolidated")]
    return preferred or found


def _read_shards(folder: Path, shards: list[str], manifest: dict[str, int] | None) -> TensorSet:
    tensors: list[TensorInfo] = []
    metadata: dict[str, str] = {}
    owner: dict[str, str] = {}
    for shard in shards:
        shard_set = _read_shard(folder, shard, manifest)
        for tensor in shard_set.tensors:
            if tensor.name in owner:
                raise InputError(
                    f"{folder}: tensor {tensor.name[:200]!r} is stored in both "
                    f"{owner[tensor.name]} and {shard}; each tensor must be in exactly one shard."
                )
            owner[tensor.name] = shard
            tensors.append(tensor)
        metadata.update(shard_set.metadata)
    return TensorSet(tensors=tuple(tensors), metadata=metadata)


def _read_shard(folder: Path, shard: str, manifest: dict[str, int] | None) -> TensorSet:
    full = folder / shard
    if full.is_file():
        return read_safetensors_header(contained(folder, full))
    header_only = folder / (shard + HEADER_SUFFIX)
    if manifest is not None and shard in manifest and header_only.is_file():
        return read_safetensors_header(
            contained(folder, header_only), file_size=manifest[shard], display_name=str(full)
        )
    raise InputError(
        f"{folder} is missing the shard {shard[:200]} that its index lists; "
        "download every shard or pass config.json alone."
    )


def _quantization_of(config: dict[str, Any], folder: Path, *, sibling_files: bool) -> dict | None:
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict):
        return quantization
    if sibling_files:
        legacy = folder / "quantize_config.json"
        if legacy.is_file():
            settings = read_json_object(contained(folder, legacy), what="GPTQ quantize_config.json")
            settings.setdefault("quant_method", "gptq")
            return settings
    return None
