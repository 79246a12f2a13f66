"""Hub fetching against a local fake Hub (http.server on 127.0.0.1); never the real network."""

from __future__ import annotations

import contextlib
import json
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vramest.errors import InputError
from vramest.readers.hub import default_cache_dir, fetch_hub_model
from vramest.readers.inspect import inspect_path

REPO = "tiny-org/tiny-model"
CONFIG = {"model_type": "llama", "hidden_size": 64}


def safetensors_file(tensors: dict[str, tuple[str, list[int], int]]) -> bytes:
    """A real safetensors file: name -> (dtype, shape, bytes per element), zero data."""
    header, offset = {}, 0
    for name, (dtype, shape, width) in tensors.items():
        size = width
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"\0" * offset


def header_bytes(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


@dataclass
class FakeHub:
    """Files per repository, with Range support, byte counting and optional quirks."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    ignore_range: bool = False
    redirect_to: str | None = None  # base URL that safetensors requests are redirected to
    status_override: int | None = None
    url: str = ""


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hub.requests.append(self.path)
            hub.authorizations.append(self.headers.get("Authorization"))
            if hub.status_override:
                self.send_error(hub.status_override)
                return
            if hub.redirect_to and self.path.endswith(".safetensors") and "/cdn/" not in self.path:
                self.send_response(302)
                self.send_header("Location", f"{hub.redirect_to}/cdn{self.path}")
                self.end_headers()
                return
            match = re.match(r"^(?:/cdn)?/(.+)/resolve/main/(.+)$", self.path)
            data = hub.files.get(match.group(1), {}).get(match.group(2)) if match else None
            if data is None:
                self.send_error(404)
                return
            byte_range = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
            if byte_range and not hub.ignore_range:
                start, end = int(byte_range.group(1)), int(byte_range.group(2))
                body = data[start:end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # counted before writing: the client may assert as soon as it has read the body
            hub.served[match.group(2)] = hub.served.get(match.group(2), 0) + len(body)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def sharded(hub: FakeHub) -> dict[str, bytes]:
    first = safetensors_file({"model.embed_tokens.weight": ("BF16", [1000, 256], 2),
                              "model.norm.weight": ("F32", [256], 4)})
    second = safetensors_file({"lm_head.weight": ("BF16", [1000, 256], 2)})
    index = {"metadata": {}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"}}
    files = {
        "config.json": json.dumps(CONFIG).encode(),
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": first,
        "model-00002-of-00002.safetensors": second,
    }
    hub.files[REPO] = files
    return files


def test_fetches_only_headers(hub: FakeHub, sharded: dict[str, bytes], tmp_path: Path) -> None:
    folder = fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    assert folder == tmp_path / "tiny-org--tiny-model"
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert hub.served[name] == header_bytes(sharded[name])
        assert hub.served[name] < len(sharded[name]) // 100
    result = inspect_path(folder)
    assert result.kind == "safetensors-folder"
    assert result.params == 2 * 1000 * 256 + 256
    assert result.weights_bytes == sum(
        len(data) - header_bytes(data) for name, data in sharded.items()
        if name.endswith(".safetensors"))
    assert result.config == CONFIG


def test_cache_is_reused_offline(hub: FakeHub, sharded: dict[str, bytes], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    before = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url) == folder
    assert len(hub.requests) == before
    assert inspect_path(folder).params == 2 * 1000 * 256 + 256


def test_online_reuse_and_refresh(hub: FakeHub, sharded: dict[str, bytes], tmp_path: Path) -> None:
    fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    before = len(hub.requests)
    fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    assert len(hub.requests) == before
    fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url, refresh=True)
    assert len(hub.requests) > before


def test_offline_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as caught:
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint="http://127.0.0.1:9")
    message = str(caught.value)
    assert "catalog" in message and "offline" in message and "local model folder" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_single_file_repo_and_env_endpoint(hub: FakeHub, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = safetensors_file({"w": ("F16", [300, 300], 2)})
    hub.files[REPO] = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": data}
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    folder = fetch_hub_model(REPO, cache_dir=tmp_path)
    assert hub.served["model.safetensors"] == header_bytes(data)
    result = inspect_path(folder)
    assert (result.params, result.weights_bytes) == (90_000, 180_000)


def test_config_only_repo(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[REPO] = {"config.json": json.dumps(CONFIG).encode(),
                       "quantize_config.json": b'{"bits": 4}'}
    result = inspect_path(fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url))
    assert result.kind == "config-only"
    assert result.quantization == {"bits": 4, "quant_method": "gptq"}


def test_server_that_ignores_range(hub: FakeHub, sharded: dict[str, bytes],
                                   tmp_path: Path) -> None:
    hub.ignore_range = True
    folder = fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    assert inspect_path(folder).params == 2 * 1000 * 256 + 256


def test_token_is_sent_but_not_across_hosts(hub: FakeHub, sharded: dict[str, bytes],
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hub.redirect_to = hub.url.replace("127.0.0.1", "localhost")
    fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    sent = dict(zip(hub.requests, hub.authorizations, strict=True))
    assert sent[f"/{REPO}/resolve/main/config.json"] == "Bearer hf_secret"
    cdn = [auth for path, auth in sent.items() if path.startswith("/cdn/")]
    assert cdn and all(auth is None for auth in cdn)


def test_unknown_repo_and_gated_repo(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_hub_model("nobody/nothing", cache_dir=tmp_path, endpoint=hub.url)
    hub.status_override = 401
    with pytest.raises(InputError, match="HF_TOKEN"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    hub.status_override = 500
    with pytest.raises(InputError, match="HTTP 500"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    assert not (tmp_path / "tiny-org--tiny-model").exists()


def test_corrupt_header_is_not_cached(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[REPO] = {"config.json": b"{}", "model.safetensors": struct.pack("<Q", 5) + b"[1,2]"}
    with pytest.raises(InputError, match="not a JSON object"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    hub.files[REPO] = {"config.json": b"[]"}
    with pytest.raises(InputError, match="not an object"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    assert list(tmp_path.iterdir()) == []


def test_index_cannot_escape(hub: FakeHub, tmp_path: Path) -> None:
    hub.files[REPO] = {"config.json": b"{}", "model.safetensors.index.json":
                       json.dumps({"weight_map": {"x": "../../evil.safetensors"}}).encode()}
    with pytest.raises(InputError, match="outside the model folder"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)


def test_network_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(InputError, match="Could not fetch"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint="http://127.0.0.1:9", timeout=2)


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "../x", "org/..", "-org/x", "org/x y",
                                     "org/na--me", "org/" + "x" * 200, "https://evil/x"])
def test_invalid_repo_ids(tmp_path: Path, repo_id: str) -> None:
    with pytest.raises(InputError, match="not a Hugging Face model id"):
        fetch_hub_model(repo_id, cache_dir=tmp_path, endpoint="http://127.0.0.1:9")


def test_bad_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(InputError, match="not an http"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint="file:///etc")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "vramest" / "hub"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "vramest" / "hub"


def test_revisions_are_cached_apart(hub: FakeHub, sharded: dict[str, bytes], tmp_path: Path) -> None:
    main = fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url)
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url, revision="v1.0")
    with pytest.raises(InputError, match="not a valid revision"):
        fetch_hub_model(REPO, cache_dir=tmp_path, endpoint=hub.url, revision="../x")
    assert main.is_dir()
