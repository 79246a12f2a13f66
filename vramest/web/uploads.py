"""Model files dropped on the page: stored in a private temporary folder, read by the readers.

The browser sends what the readers need, never whole weights: a config.json or safetensors
index whole, a safetensors file's header (its first 8 + N bytes), a GGUF file's first
`MAX_GGUF_HEADER_BYTES`. Each file's real size comes with it, and the server extends the
copy to that size as a sparse file, so the readers' checks of offsets against the file size
hold while no tensor data is ever sent or stored.

The request body: one line of JSON, `{"folder": NAME | null, "files": [{"name", "length",
"size"}, …]}`, then the files' bytes one after another. Names must be plain file names of the
kinds above; the whole body is bounded by `MAX_UPLOAD_BYTES`. An upload is known by the
first 16 hex digits of its body's SHA-256 (`upload:ID` as the page's `model`), and only
folders this server made are ever read.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import Any

MAX_UPLOAD_BYTES = 64 * 1024**2
MAX_GGUF_HEADER_BYTES = 48 * 1024**2
MAX_FILES = 256
MAX_MANIFEST_BYTES = 64 * 1024
MAX_DECLARED_SIZE = 16 * 1024**4  # a real file's size; the sparse copy never stores it
MAX_KEPT = 32  # uploads kept at once; the oldest is deleted first
MAX_KEPT_BYTES = 256 * 1024**2  # bytes stored for them in all (the sparse rest takes none)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,150}")
_SPARSE_SUFFIXES = (".safetensors", ".gguf")
_ACCEPTED = "config.json, a safetensors index or header, or a GGUF file's header"


@frozen
class Upload:
    token: str
    path: Path  # what --model gets: the one file, or the folder
    name: str  # what a person would pass as --model
    root: Path  # the upload's own folder
    stored_bytes: int = 0


class Uploads:
    """The uploads this server holds, in one private temporary folder (mode 0700)."""

    def __init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="vramest-web-"))
        self._kept: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()  # the table of uploads
        self._writing = threading.Lock()  # one upload written at a time

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)

    def resolve(self, token: str) -> tuple[str, str]:
        """(the private path for --model, the name a person would type) of an upload."""
        with self._lock:
            upload = self._kept.get(token)
        if upload is None:
            raise InputError(f"No uploaded model {token[:40]!r} on this server (uploads last "
                             "until it stops); drop the file on the page again.")
        return str(upload.path), upload.name

    def redact(self, message: str) -> str:
        """A reader's sentence about a private path, with the name the person gave instead."""
        with self._lock:
            uploads = list(self._kept.values())
        for upload in uploads:
            message = message.replace(str(upload.path), upload.name)
            message = message.replace(str(upload.root) + "/", "")
        return message.replace(str(self._root), "the upload")

    def add(self, body: bytes) -> Upload:
        """Store one upload's files and check that the readers accept them."""
        manifest, files = _split(body)
        _check_headers(files)
        with self._writing:
            return self._store(body, manifest, files)

    def _store(self, body: bytes, manifest: dict[str, Any],
               files: list[tuple[str, bytes, int]]) -> Upload:
        token = hashlib.sha256(body).hexdigest()[:16]
        with self._lock:
            if token in self._kept:
                self._kept.move_to_end(token)
                return self._kept[token]
        root = self._root / token
        folder_name = manifest.get("folder")
        if folder_name is not None:
            _check_name(folder_name, "folder")
        shutil.rmtree(root, ignore_errors=True)
        target = root / (folder_name or "model")
        target.mkdir(parents=True)
        for name, data, size in files:
            path = target / name
            path.write_bytes(data)
            if size > len(data):
                with path.open("r+b") as handle:
                    handle.truncate(size)  # sparse: the readers see the real size, no data
        single = len(files) == 1 and folder_name is None
        upload = Upload(token=token, path=target / files[0][0] if single else target,
                        name=files[0][0] if single else folder_name or "model", root=root,
                        stored_bytes=len(body))
        try:
            _check_readable(upload)
        except InputError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise InputError(self._redact_one(str(exc), upload)) from None
        with self._lock:
            self._kept[token] = upload
            while len(self._kept) > MAX_KEPT or (len(self._kept) > 1 and sum(
                    u.stored_bytes for u in self._kept.values()) > MAX_KEPT_BYTES):
                _, old = self._kept.popitem(last=False)
                shutil.rmtree(old.root, ignore_errors=True)
        return upload

    @staticmethod
    def _redact_one(message: str, upload: Upload) -> str:
        return message.replace(str(upload.path), upload.name).replace(str(upload.root) + "/", "")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InputError(f"The upload's {what} name {str(name)[:60]!r} is not a plain file name "
                         "(letters, digits, . _ + -).")
    return name


def _split(body: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes, int]]]:
    """The manifest and (name, bytes, real size) of each file, every bound checked."""
    end = body.find(b"\n", 0, MAX_MANIFEST_BYTES)
    if end < 0:
        raise InputError("The upload does not start with its JSON manifest line.")
    try:
        manifest = json.loads(body[:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError("The upload's manifest line is not valid JSON.") from None
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_FILES:
        raise InputError(f"The upload's manifest must list 1 to {MAX_FILES} files.")
    files: list[tuple[str, bytes, int]] = []
    at = end + 1
    names: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise InputError("Each file in the upload's manifest must be an object.")
        name = _check_name(entry.get("name"), "file")
        length, size = entry.get("length"), entry.get("size")
        if type(length) is not int or type(size) is not int or not 0 <= length <= size:
            raise InputError(f"The upload gives {name} a length and size that are not whole "
                             "numbers with length ≤ size.")
        if not name.endswith((".json", *_SPARSE_SUFFIXES)):
            raise InputError(f"{name} is not a file the page reads: give {_ACCEPTED}.")
        if name.endswith(".json") and length != size:
            raise InputError(f"{name} must be sent whole.")
        if size > MAX_DECLARED_SIZE:
            raise InputError(f"{name} declares {size} bytes, more than 16 TiB.")
        if name in names:
            raise InputError(f"The upload lists {name} twice.")
        names.add(name)
        files.append((name, body[at:at + length], size))
        at += length
    if at != len(body):
        raise InputError("The upload's length does not match its manifest.")
    return manifest, files


def _check_headers(files: list[tuple[str, bytes, int]]) -> None:
    """Each partial file must hold its whole header, checked in memory before anything is
    written: the sparse rest of the file reads as zeros, which no reader should parse."""
    for name, data, size in files:
        if len(data) == size:
            continue
        if name.endswith(".safetensors"):
            header = int.from_bytes(data[:8], "little") if len(data) >= 8 else size
            if len(data) < 8 + header:
                raise InputError(f"{name} was sent without its whole header ({len(data)} of "
                                 f"{8 + header} bytes); send the first 8 + N bytes.")
        elif name.endswith(".gguf"):
            _check_gguf_header(name, data, size)


class _HeaderRanOut(Exception):
    """The reader asked for bytes past those sent."""


class _SentBytes:
    """A file's first bytes as a read-only handle of its real size. A read that starts past
    them raises _HeaderRanOut; one that starts inside and runs past is padded with zeros, as
    the sparse copy would be (the GGUF reader reads ahead and gives back what it did not use)."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.position = data, size, 0

    def read(self, count: int) -> bytes:
        if count > 0 and self.position >= len(self.data):
            raise _HeaderRanOut
        out = self.data[self.position:self.position + count]
        pad = max(0, min(count, self.size - self.position) - len(out))
        self.position += len(out) + pad
        return out + bytes(pad)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset + (self.position if whence == io.SEEK_CUR else 0)
        return self.position


def _check_gguf_header(name: str, data: bytes, size: int) -> None:
    """The GGUF reader over the bytes sent, as if the file had its real size: its own
    sentence when the header is wrong, ours when it is longer than what was sent."""
    from vramest.readers import gguf

    cursor = gguf._Cursor(_SentBytes(data, size), size, name)  # type: ignore[arg-type]
    try:
        gguf._read(cursor, Path(name))
        complete = cursor.position <= len(data)
    except _HeaderRanOut:
        complete = False
    if not complete:
        raise InputError(f"{name}'s header is longer than the "
                         f"{MAX_GGUF_HEADER_BYTES // 1024**2} MiB the page sends; run "
                         "`vramest --model FILE.gguf` on the command line instead.")


def _check_readable(upload: Upload) -> None:
    """The readers must accept the stored upload as the CLI would read it."""
    from vramest.readers.inspect import inspect_path

    inspect_path(upload.path)
