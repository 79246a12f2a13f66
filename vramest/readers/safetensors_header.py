"""Read the JSON header of a .safetensors file, never its tensor data.

Layout: 8 bytes little-endian header length N, then N bytes of UTF-8 JSON mapping each tensor
name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
header), with an optional "__metadata__" object of string to string. Every field is checked
because the file may be anything.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING
from vramest.readers.tensors import TensorInfo, TensorSet

if TYPE_CHECKING:
    from typing import Any

MAX_HEADER_BYTES = 100 * 1024 * 1024
LENGTH_PREFIX_BYTES = 8

# Storage types the safetensors format defines, in bits per element (sub-byte float types
# pack several elements per byte).
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F8_E4M3": 8, "F8_E5M2": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}
_ACCEPTED = "a .safetensors file (8-byte little-endian header length, then a JSON header)"


def read_safetensors_header(path: str | os.PathLike[str], *, file_size: int | None = None,
                            display_name: str | None = None) -> TensorSet:
    """Tensor names, dtypes, shapes and byte sizes from a .safetensors file's header.

    `file_size` is for header-only copies (the hub cache): the file on disk holds just the
    length prefix and the header, and `file_size` is the size of the real file, which the
    data offsets are checked against. `display_name` is how errors name the file.
    """
    path = Path(path)
    shown = display_name or str(path)
    try:
        with path.open("rb") as handle:
            actual_size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(LENGTH_PREFIX_BYTES)
            if len(prefix) < LENGTH_PREFIX_BYTES:
                raise _fail(shown, "is too short to be a safetensors file")
            (header_length,) = struct.unpack("<Q", prefix)
            # the declared length is never printed: it is 8 bytes of whatever the file holds
            if header_length > MAX_HEADER_BYTES:
                raise InputError(
                    f"{shown} declares a safetensors header over the "
                    f"{MAX_HEADER_BYTES // (1024 * 1024)} MiB limit: expected {_ACCEPTED}."
                )
            if LENGTH_PREFIX_BYTES + header_length > actual_size:
                raise InputError(
                    f"{shown} is truncated: its declared safetensors header is longer than the "
                    f"file; expected {_ACCEPTED}."
                )
            header_bytes = handle.read(header_length)
    except OSError as error:
        raise _fail(shown, f"cannot be read ({error.strerror or error})") from None
    if len(header_bytes) != header_length:
        raise InputError(f"{shown} is truncated inside its header: expected {_ACCEPTED}.")
    total_size = actual_size if file_size is None else file_size
    return parse_safetensors_header(header_bytes, file_size=total_size, display_name=shown)


def parse_safetensors_header(
    header_bytes: bytes, *, file_size: int, display_name: str
) -> TensorSet:
    """Validate a header's JSON against the size of the file it came from."""
    shown = display_name
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(shown, "has a safetensors header that is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise _fail(shown, "has a safetensors header that is not a JSON object")
    data_size = file_size - LENGTH_PREFIX_BYTES - len(header_bytes)
    if data_size < 0:
        raise _fail(shown, "is smaller than its own safetensors header")

    metadata = _read_metadata(header.get("__metadata__", {}), shown)
    tensors = tuple(
        _read_entry(name, entry, data_size, shown)
        for name, entry in header.items()
        if name != "__metadata__"
    )
    return TensorSet(tensors=tensors, metadata=metadata)


def _fail(shown: str, what: str) -> InputError:
    return InputError(f"{shown} {what}: expected {_ACCEPTED}.")


def _read_metadata(raw: Any, shown: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in raw.items()
    ):
        raise InputError(
            f"{shown} has a __metadata__ entry that is not an object of strings to strings, "
            "as the safetensors format requires."
        )
    return dict(raw)


def _read_entry(name: str, entry: Any, data_size: int, shown: str) -> TensorInfo:
    def bad(what: str) -> InputError:
        return InputError(
            f"{shown}: tensor {name[:200]!r} {what}, as the safetensors format requires."
        )

    if not isinstance(entry, dict):
        raise bad("is not described by a JSON object with dtype, shape and data_offsets")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
        known = ", ".join(SAFETENSORS_DTYPE_BITS)
        raise bad(f"has dtype {str(dtype)[:40]!r}; it must be one of {known}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise bad("has a shape that is not a list of non-negative integers")
    if len(shape) > 64:
        raise bad("has more than 64 dimensions; it must have at most 64")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(value) is int for value in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad("has data_offsets that are not two integers [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    if end > data_size:
        raise bad(
            f"ends at byte {end} of the data but the file holds only {data_size} data bytes "
            "(truncated or corrupt); its data_offsets must lie within the file"
        )
    # The offsets are within the file, so the element count that matches them is bounded too;
    # a zero in the shape short-circuits huge products of the other dimensions.
    numel = 0 if 0 in shape else math.prod(shape)
    bits = SAFETENSORS_DTYPE_BITS[dtype]
    if numel * bits % 8:
        raise bad(f"has {numel} elements of {dtype}, which do not fill whole bytes")
    nbytes = numel * bits // 8
    if end - begin != nbytes:
        raise bad(
            f"spans {end - begin} bytes but {numel} elements of {dtype} take {nbytes}; "
            "its data_offsets must match its dtype and shape"
        )
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), nbytes=nbytes)

