"""Fetch just enough of a Hugging Face Hub model to know its exact size: no weights.

`fetch_hub_model` downloads config.json, quantize_config.json and model.safetensors.index.json
when they exist, and for each safetensors shard only its header, with two HTTP Range requests
(the 8-byte length prefix, then the JSON header). A multi-gigabyte checkpoint costs a few
hundred kilobytes.

Cache layout, one folder per repository (`<org>--<name>`), readable by `read_model_folder`:

    config.json, model.safetensors.index.json, quantize_config.json   as served
    <shard>.header       the shard's first 8 + N bytes (length prefix and JSON header)
    vramest-hub.json     {"repo_id", "revision", "endpoint", "shards": {shard: real size}}

The manifest is written last, so a folder without it is an interrupted fetch and is ignored.
A cached repository is reused without touching the network unless `refresh=True`.

Environment: HF_HUB_OFFLINE=1 uses the cache only, HF_ENDPOINT replaces the default
endpoint, HF_TOKEN is sent as a bearer token (and dropped on redirects to another host).
Only urllib is used; nothing from the repository is executed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from functools import cached_property
from pathlib import Path

from vramest.errors import InputError
from vramest.files import parse_json
from vramest.frozen import TYPE_CHECKING, frozen
from vramest.readers.folder import (
    HEADER_SUFFIX,
    HUB_MANIFEST,
    INDEX_FILE,
    MAX_JSON_BYTES,
    MAX_SHARDS,
    check_shard_name,
)
from vramest.readers.safetensors_header import (
    LENGTH_PREFIX_BYTES,
    MAX_HEADER_BYTES,
    parse_safetensors_header,
)

if TYPE_CHECKING:
    from typing import Any

# A request's whole time, in units of the per-read timeout (10 s by default: 60 s in all).
REQUEST_TIMEOUTS = 6
DEFAULT_ENDPOINT = "https://huggingface.co"
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^(?:{_NAME_PART}/)?{_NAME_PART}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_LOCAL_INSTEAD = "pass a local model folder, config.json or .gguf path instead"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for no network access."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def validate_repo_id(repo_id: str) -> str:
    """`org/name` (or a bare legacy `name`) with the Hub's characters, else InputError."""
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.match(repo_id)
        or ".." in repo_id
        or "--" in repo_id
    ):
        raise InputError(
            f"{str(repo_id)[:200]!r} is not a Hugging Face model id: expected org/name made of "
            "letters, digits, '-', '_' and '.', or a local path."
        )
    return repo_id


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/vramest/hub, else ~/.cache/vramest/hub."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vramest" / "hub"


def cache_folder_for(repo_id: str, cache_dir: str | os.PathLike[str] | None = None,
                     revision: str = "main") -> Path:
    """`<cache>/<org>--<name>`, with `@<revision>` appended for revisions other than main."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = validate_repo_id(repo_id).replace("/", "--")
    if revision != "main":
        name += "@" + _validate_revision(revision).replace("/", "%2F")
    return base / name


def _validate_revision(revision: str) -> str:
    if not isinstance(revision, str) or not _REVISION.match(revision) or ".." in revision:
        raise InputError(f"{str(revision)[:100]!r} is not a valid revision: expected a branch, "
                         "tag or commit hash.")
    return revision


def is_cached(folder: Path) -> bool:
    return (folder / HUB_MANIFEST).is_file()


def fetch_hub_model(
    repo_id: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    timeout: float = 10,
    revision: str = "main",
    refresh: bool = False,
) -> Path:
    """A local folder holding the model's config and shard headers, fetched once and cached.

    `endpoint` defaults to $HF_ENDPOINT, else https://huggingface.co. Raises InputError when
    offline without a cached copy, on network errors and for unknown or gated repositories.
    """
    folder = cache_folder_for(repo_id, cache_dir, revision)
    try:
        cached = is_cached(folder)
    except OSError:
        cached = False
    if cached and not refresh:
        return folder
    if hub_offline():
        raise InputError(
            f"{repo_id!r} is not in vramest's catalog and cannot be fetched because this machine "
            f"is offline (HF_HUB_OFFLINE is set) and it was never cached; {_LOCAL_INSTEAD}."
        )
    base_url = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise InputError(f"The Hub endpoint {base_url[:200]!r} is not an http(s) URL: set "
                         "HF_ENDPOINT to a URL such as https://huggingface.co.")
    client = _HubClient(repo_id, base_url, revision, timeout, os.environ.get("HF_TOKEN"))
    files, shard_sizes, headers = _download(client)

    staging: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        for name, data in files.items():
            (staging / name).write_bytes(data)
        for shard, header in headers.items():
            target = staging / (shard + HEADER_SUFFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(header)
        manifest = {
            "format": "vramest-hub-cache",
            "version": 1,
            "repo_id": repo_id,
            "revision": revision,
            "endpoint": base_url,
            "shards": shard_sizes,
        }
        (staging / HUB_MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except OSError as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise InputError(
            f"Cannot write the cache folder {folder} ({error.strerror or error}); "
            "set XDG_CACHE_HOME to a writable folder."
        ) from None
    return folder


def _download(client: _HubClient) -> tuple[dict[str, bytes], dict[str, int], dict[str, bytes]]:
    """(small files by name, shard sizes, shard length prefix + header bytes)."""
    files: dict[str, bytes] = {}
    config = client.get_small("config.json", required=True)
    assert config is not None
    files["config.json"] = _checked_json_object(config, client.describe("config.json"))
    legacy = client.get_small("quantize_config.json", required=False)
    if legacy is not None:
        files["quantize_config.json"] = _checked_json_object(
            legacy, client.describe("quantize_config.json")
        )
    index = client.get_small(INDEX_FILE, required=False)
    if index is not None:
        files[INDEX_FILE] = _checked_json_object(index, client.describe(INDEX_FILE))
        shards = _shards_of_index(parse_json(index, what=client.describe(INDEX_FILE)),
                                  client.describe(INDEX_FILE))
    else:
        shards = ["model.safetensors"]

    sizes: dict[str, int] = {}
    headers: dict[str, bytes] = {}
    for shard in shards:
        fetched = client.get_header(shard, required=index is not None)
        if fetched is None:  # no index and no model.safetensors: a config-only repository
            continue
        header, size = fetched
        parse_safetensors_header(
            header[LENGTH_PREFIX_BYTES:], file_size=size, display_name=client.describe(shard)
        )
        sizes[shard] = size
        headers[shard] = header
    return files, sizes, headers


def _checked_json_object(data: bytes, shown: str) -> bytes:
    value = parse_json(data, what=f"{shown} (expected a JSON object)")
    if not isinstance(value, dict):
        raise InputError(f"{shown} holds JSON that is not an object: expected a JSON object.")
    return data


def _shards_of_index(index: dict[str, Any], shown: str) -> list[str]:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        raise InputError(f"{shown} has no weight_map object, which a safetensors index must have.")
    names: dict[str, None] = {}
    for shard in weight_map.values():
        names[check_shard_name(shard, shown)] = None
        if len(names) > MAX_SHARDS:
            raise InputError(f"{shown} names more than {MAX_SHARDS} shards.")
    return list(names)


class _NoCredentialsAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never send the Authorization header to a different host."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc
            if urllib.parse.urlsplit(new.full_url).netloc != old_host:
                new.remove_header("Authorization")
        return new


@frozen
class _HubClient:
    repo_id: str
    endpoint: str
    revision: str
    timeout: float
    token: str | None

    @cached_property
    def opener(self) -> urllib.request.OpenerDirector:
        return urllib.request.build_opener(_NoCredentialsAcrossHosts())

    def url(self, filename: str) -> str:
        quoted = urllib.parse.quote(filename)
        revision = urllib.parse.quote(self.revision, safe="")
        return f"{self.endpoint}/{self.repo_id}/resolve/{revision}/{quoted}"

    def describe(self, filename: str) -> str:
        return f"{self.repo_id}/{filename} on {self.endpoint}"

    def _open(self, filename: str, byte_range: tuple[int, int] | None) -> Any:
        request = urllib.request.Request(self.url(filename))
        request.add_header("User-Agent", "vramest")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if byte_range is not None:
            request.add_header("Range", f"bytes={byte_range[0]}-{byte_range[1]}")
        return self.opener.open(request, timeout=self.timeout)

    def _fail(self, filename: str, reason: str) -> InputError:
        return InputError(
            f"Could not fetch {self.describe(filename)} ({reason}); check the network and the "
            f"model id, or {_LOCAL_INSTEAD}."
        )

    def _request(self, filename: str, byte_range: tuple[int, int] | None, limit: int,
                 required: bool) -> tuple[bytes, dict[str, str], int] | None:
        """(body up to `limit` bytes, headers, status), or None for a 404 on an optional file.

        `timeout` bounds each socket read; a server that drips a byte just inside it would hold
        a request for ever, so the whole request runs in a worker given REQUEST_TIMEOUTS times
        `timeout` in all, and the body is read a chunk at a time against the same deadline."""
        deadline = time.monotonic() + REQUEST_TIMEOUTS * self.timeout
        outcome: list[Any] = []

        def work() -> None:
            try:
                outcome.append(self._request_now(filename, byte_range, limit, required, deadline))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        worker = threading.Thread(target=work, name="vramest-hub", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()) + 1)
        if not outcome:
            raise self._fail(filename, f"no complete answer within "
                             f"{REQUEST_TIMEOUTS * self.timeout:g} s")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _request_now(self, filename: str, byte_range: tuple[int, int] | None, limit: int,
                     required: bool, deadline: float) -> tuple[bytes, dict[str, str], int] | None:
        try:
            with self._open(filename, byte_range) as response:
                chunks: list[bytes] = []
                total = 0
                while total <= limit:
                    if time.monotonic() > deadline:
                        raise self._fail(filename, "the server sends too slowly")
                    chunk = response.read1(min(1 << 16, limit + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                body = b"".join(chunks)
                return body, {k.lower(): v for k, v in response.headers.items()}, response.status
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404 and not required:
                return None
            if error.code in (401, 403):
                raise InputError(
                    f"{self.describe(filename)} needs access rights (HTTP {error.code}): the "
                    f"repository is gated or private; set HF_TOKEN or {_LOCAL_INSTEAD}."
                ) from None
            if error.code == 404:
                raise InputError(
                    f"{self.repo_id!r} has no {filename} on {self.endpoint} (HTTP 404): check "
                    f"the model id, or {_LOCAL_INSTEAD}."
                ) from None
            raise self._fail(filename, f"HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise self._fail(filename, str(error.reason)[:200]) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise self._fail(filename, type(error).__name__) from None

    def get_small(self, filename: str, *, required: bool) -> bytes | None:
        result = self._request(filename, None, MAX_JSON_BYTES, required)
        if result is None:
            return None
        body = result[0]
        if len(body) > MAX_JSON_BYTES:
            raise InputError(f"{self.describe(filename)} is larger than 16 MiB: expected a small "
                             "JSON file.")
        return body

    def get_header(self, shard: str, *, required: bool) -> tuple[bytes, int] | None:
        """The shard's length prefix and header, and the shard's full size."""
        shown = self.describe(shard)
        first = self._request(shard, (0, LENGTH_PREFIX_BYTES - 1), LENGTH_PREFIX_BYTES, required)
        if first is None:
            return None
        body, headers, status = first
        size = self._total_size(headers, status, shown)
        if len(body) < LENGTH_PREFIX_BYTES:
            raise InputError(f"{shown} is too short to be a safetensors file.")
        prefix = body[:LENGTH_PREFIX_BYTES]
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > MAX_HEADER_BYTES or LENGTH_PREFIX_BYTES + header_length > size:
            raise InputError(f"{shown} declares a header that does not fit its file: expected a "
                             "safetensors file.")
        if header_length == 0:
            return prefix, size
        end = LENGTH_PREFIX_BYTES + header_length - 1
        # Room for the prefix too, in case the server ignores the range and starts at byte 0.
        limit = LENGTH_PREFIX_BYTES + header_length
        second = self._request(shard, (LENGTH_PREFIX_BYTES, end), limit, True)
        assert second is not None
        body, headers, status = second
        if status == 200:  # the server ignored the range and sent the file from the start
            body = body[LENGTH_PREFIX_BYTES:]
        header = body[:header_length]
        if len(header) != header_length:
            raise InputError(f"{shown} ended inside its header: expected a safetensors file.")
        return prefix + header, size

    @staticmethod
    def _total_size(headers: dict[str, str], status: int, shown: str) -> int:
        if status == 206:
            match = _CONTENT_RANGE.match(headers.get("content-range", "").strip())
            if match:
                return int(match.group(3))
        elif status == 200 and headers.get("content-length", "").strip().isdigit():
            return int(headers["content-length"].strip())
        raise InputError(f"{shown} was served without its total size (no Content-Range), so its "
                         "header cannot be checked; try again or pass a local path instead.")
