"""The project's file I/O for inputs and outputs people hand us: one bounded reader, one JSON
loader, one atomic writer, one appender. Every failure is one `InputError` sentence.

Reading: regular files only (a device, FIFO or folder is refused without blocking: the file is
opened with O_NONBLOCK and checked with fstat after opening), and the byte cap holds while
reading (cap + 1 bytes are read), because `stat` says 0 bytes for /dev/zero.

Writing: only over a regular file or onto a new name; never over a device, FIFO, folder or
symbolic link. The new file keeps the replaced file's mode, is fsynced, then renamed over.

Torch-free, and no imports beyond the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

SMALL_FILE_BYTES = 16 * 1024**2  # a profile, hardware file, spec, baseline, config.json
MAX_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux

PathLike = str | os.PathLike[str]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def check_path_text(path: PathLike, what: str) -> Path:
    """A path's text: no NUL, not over PATH_MAX, no component over 255 bytes, and encodable as
    a file name (a lone surrogate is not)."""
    try:
        text = os.fspath(path)
    except TypeError:
        text = path  # type: ignore[assignment]
    if not isinstance(text, str):
        raise InputError(f"{what} must be a path given as text, not {type(text).__name__}.")
    if not text or "\x00" in text:
        raise InputError(f"{what} {short(text)} is not a file path (empty, or holds a NUL).")
    if len(text) > MAX_PATH_CHARS:
        raise InputError(f"{what} {short(text)} is longer than {MAX_PATH_CHARS} characters.")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise InputError(f"{what} {short(text)} holds characters no file name can.") from None
    for part in Path(text).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise InputError(f"{what} {short(text)} has a name over {MAX_NAME_BYTES} bytes, "
                             "more than file systems allow.")
    return Path(text)


# --- reading -------------------------------------------------------------------------------------


def read_bytes(path: PathLike, *, what: str, limit: int = SMALL_FILE_BYTES,
               missing: str = "") -> bytes:
    """A regular file's bytes, at most `limit` of them; anything else is one sentence
    (`missing` ends the one for a file that does not exist: "; `vramest calibrate` writes one")."""
    file = check_path_text(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(file, flags)
    except FileNotFoundError:
        raise InputError(f"{what} {file} does not exist{missing}.") from None
    except IsADirectoryError:
        raise InputError(f"{what} {file} is a folder; give a file.") from None
    except OSError as exc:
        raise InputError(f"{what} {file} cannot be read ({exc.strerror or exc}).") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{what} {file} is {_kind(mode)}; give a regular file.")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputError(f"{what} {file} cannot be read ({exc.strerror or exc}).") from None
    finally:
        os.close(fd)
    if total > limit:
        raise InputError(f"{what} {file} is larger than {_size(limit)}; expected a small file.")
    return b"".join(chunks)


def read_text(path: PathLike, *, what: str, limit: int = SMALL_FILE_BYTES,
              missing: str = "") -> str:
    try:
        return read_bytes(path, what=what, limit=limit, missing=missing).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {Path(path)} is not UTF-8 text.") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str | bytes, *, what: str, allow_nonfinite: bool = False) -> Any:
    """JSON text as Python values; bad syntax, nesting too deep for the parser, an integer of
    thousands of digits, or (unless allowed) NaN/Infinity are one sentence."""
    try:
        if allow_nonfinite:
            return json.loads(text)
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InputError(f"{what} is not valid JSON: it nests too deeply to read; expected a plain "
                         "JSON document.") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} is not valid UTF-8 JSON.") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, int_max_str_digits
        raise InputError(f"{what} is not valid JSON ({str(exc)[:120]}).") from None


def read_json(path: PathLike, *, what: str, limit: int = SMALL_FILE_BYTES,
              missing: str = "") -> Any:
    """A small JSON file: bounded, regular, finite numbers only."""
    data = read_bytes(path, what=what, limit=limit, missing=missing)
    return parse_json(data, what=f"{what} {Path(path)}")


def dumps_json(data: Any, *, indent: int | None = 1) -> str:
    """JSON for files and --json output: NaN and Infinity become null, never invalid JSON;
    what JSON has no type for (a path, bytes) is written as its text."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- writing -------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _existing(target: Path, what: str) -> os.stat_result | None:
    """The status of the regular file at `target`, None when nothing is there; anything that
    is not a regular file (a symlink included) is refused."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"Cannot write {what} {target} ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"Cannot write {what} {target}: it is {_kind(info.st_mode)}, and only a "
                         "regular file or a new name is written over.")
    return info


def _folder_of(target: Path, what: str) -> Path:
    folder = target.parent if str(target.parent) else Path(".")
    try:
        is_dir = folder.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        raise InputError(f"Cannot write {what} {target}: the folder {folder} does not exist.")
    return folder


def make_folder_for(path: PathLike, *, what: str = "output") -> None:
    """Create the folder `path` is to be written in, if missing; failing is one sentence."""
    target = check_path_text(path, what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the folder of {what} {target} ({_reason(exc)}).") from None


def check_writable(path: PathLike, *, what: str = "output", make_folder: bool = False) -> Path:
    """Fail now, with one sentence, where writing `path` later would fail: a bad name, a
    missing or read-only folder, or something there that is not a regular file. Creates and
    removes a temporary file beside it (the only reliable test on read-only mounts). With
    `make_folder`, a missing folder is created first."""
    target = check_path_text(path, what)
    _existing(target, what)
    if make_folder:
        make_folder_for(target, what=what)
    folder = _folder_of(target, what)
    import tempfile  # only writers pay for it (it pulls in shutil, random, bz2, lzma)

    try:
        fd, probe = tempfile.mkstemp(prefix=".vramest-", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(f"Cannot write {what} {target} ({exc.strerror or exc}).") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return target


def write_atomic(path: PathLike, data: bytes | str, *, what: str = "output") -> Path:
    """Readers see the old file or the new one, never half of either; a regular file or a new
    name only, with the old file's mode (a new file gets the umask's)."""
    target = check_path_text(path, what)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    old = _existing(target, what)
    folder = _folder_of(target, what)
    temp: str | None = None
    import tempfile

    try:
        fd, temp = tempfile.mkstemp(prefix=".vramest-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            if hasattr(os, "fchmod"):  # mkstemp made it 0600
                os.fchmod(out.fileno(), 0o666 & ~_umask() if old is None else
                          stat.S_IMODE(old.st_mode))
            if old is not None and hasattr(os, "fchown"):  # root replacing a user's file
                with contextlib.suppress(OSError):
                    os.fchown(out.fileno(), old.st_uid, old.st_gid)
            os.fsync(out.fileno())
        _existing(target, what)  # once more: something else may have appeared there
        os.replace(temp, target)
        temp = None
        _fsync_folder(folder)
    except OSError as exc:
        raise InputError(f"Cannot write {what} {target} ({_reason(exc)}).") from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return target


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return str(exc.strerror or exc)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system opens folders)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_line(path: PathLike, line: str, *, what: str = "log") -> None:
    """Append one line (fsynced before returning). A last line left without its newline by a
    crash or a full disk is ended first, so the new line never joins it."""
    target = check_path_text(path, what)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_NONBLOCK", 0)
    text = line if line.endswith("\n") else line + "\n"
    try:
        fd = os.open(target, flags, 0o666)
    except OSError as exc:
        raise InputError(f"Cannot append to {what} {target} ({_reason(exc)}).") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"Cannot append to {what} {target}: it is {_kind(info.st_mode)}.")
        prefix = b""
        if info.st_size > 0 and os.pread(fd, 1, info.st_size - 1) != b"\n":
            prefix = b"\n"
        os.write(fd, prefix + text.encode("utf-8"))
        os.fsync(fd)
    except OSError as exc:
        raise InputError(f"Cannot append to {what} {target} ({_reason(exc)}).") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_path: PathLike, *, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created beside what it guards, so two runs with
    different temporary folders, or two hosts sharing the folder, still see each other); a
    second holder gets `busy` as its error at once. flock, not lockf: it excludes a second
    holder in the same process too, and Linux maps it onto NFS byte-range locks. Where there
    is no fcntl (Windows), nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    target = check_path_text(lock_path, "lock file")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(target, flags, 0o666)
    except OSError as exc:
        raise InputError(f"Cannot create the lock file {target} ({_reason(exc)}).") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"The lock file {target} is not a regular file; remove it.")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                raise InputError(busy) from None
            raise InputError(f"Cannot lock {target} ({_reason(exc)}).") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _size(limit: int) -> str:
    return f"{limit // 1024**2} MiB" if limit >= 1024**2 else f"{limit} bytes"
