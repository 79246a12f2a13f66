"""`vramest web` without a browser: the API answers exactly as the CLI does, refuses what the
CLI refuses with the CLI's sentence, never reads a path a request names, and bounds uploads."""

from __future__ import annotations

import contextlib
import http.client
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramest.cli import main
from vramest.units import format_bytes
from vramest.web.server import WebServer
from vramest.web.uploads import MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    web = WebServer("127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    yield web
    web.shutdown()
    web.server_close()


def get(server: WebServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()


def post(server: WebServer, body: bytes) -> tuple[int, dict]:
    request = Request(server.url + "api/upload", data=body, method="POST")
    try:
        with urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def flags(query: dict[str, str]) -> list[str]:
    argv: list[str] = []
    for name, value in query.items():
        argv += [f"--{name}"] if value == "1" and name in ("max-ctx", "flash-attn", "fit") \
            else [f"--{name}", value]
    return argv


CASES = [
    {"params": "70B", "dtype": "int4", "ctx": "8192", "gpu": "h100"},
    {"model": "llama-3.1-8b", "ctx": "32k", "batch": "4"},
    {"model": "meta-llama/Llama-3.1-8B", "engine": "vllm", "gpu": "4090",
     "gpu-memory-utilization": "0.85", "max-model-len": "16k"},
    {"params": "8B", "dtype": "q4_k_m", "kv-dtype": "q8_0", "engine": "llamacpp", "gpu": "4090",
     "flash-attn": "1"},
    {"params": "70B", "dtype": "int4", "gpu": "4090", "num-gpus": "2", "max-ctx": "1"},
    {"model": "Qwen/Qwen2.5-7B", "ctx": "128k", "attn": "eager", "gpu": "a100"},
]


@pytest.mark.parametrize("query", CASES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_api_is_the_cli_json(server: WebServer, query: dict[str, str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    status, body = get(server, "/api/estimate?" + urlencode(query))
    code, out, _ = cli([*flags(query), "--json"], capsys)
    assert (status, code) == (200, 0)
    assert body.decode() == out  # byte for byte what the terminal prints


def test_view_formats_as_the_terminal(server: WebServer, capsys: pytest.CaptureFixture[str]) -> None:
    query = CASES[0]
    status, body = get(server, "/api/view?" + urlencode(query))
    assert status == 200
    answer = json.loads(body)
    _, text, _ = cli(flags(query), capsys)
    memory = answer["estimate"]["memory"]
    shown = {p["name"]: p["text"] for p in answer["formatted"]["parts"]}
    assert shown == {name: format_bytes(memory[name]) for name in shown}
    for name, label in (("weights", "weights"), ("kv_cache", "KV cache")):
        assert f"{label:<12} {shown[name]:>11}" in text  # the same string the terminal shows
    assert answer["formatted"]["fit"]["describe"] in text
    assert answer["command"] == "vramest --params 70B --dtype int4 --ctx 8192 --gpu h100"
    status, body = get(server, "/api/chart?" + urlencode(query))
    svg = json.loads(body)["svg"]
    assert status == 200 and svg.startswith("<svg") and "NVIDIA H100" in svg
    other_ctx = {**query, "ctx": "100k"}
    assert json.loads(get(server, "/api/chart?" + urlencode(other_ctx))[1])["svg"] == svg


@pytest.mark.parametrize("query", [
    {"params": "70B", "ctx": "-5"},
    {"params": "70B", "dtype": "int3"},
    {"params": "70B", "gpu": "h1000"},
    {"params": "70B", "batch": "0"},
    {"params": "70B", "engine": "mlc-llm"},
    {"params": "70B", "gpu": "h100", "num-gpus": "3"},
    {"dtype": "int4"},
])
def test_bad_input_is_400_with_the_cli_sentence(server: WebServer, query: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    status, body = get(server, "/api/estimate?" + urlencode(query))
    code, _, err = cli([*flags(query), "--json"], capsys)
    assert (status, code) == (400, 2)
    assert "vramest: " + json.loads(body)["error"] + "\n" == err


@pytest.mark.parametrize("query, words", [
    ("params=7B&params=8B", "given twice"),
    ("params=7B&colour=red", "Unknown parameter 'colour'"),
    ("params=7B&json=1", "Unknown parameter 'json'"),
    ("params=7B&max-ctx=maybe", "is a switch"),
    ("params=" + "9" * 300, "longer than"),
    ("&".join(f"p{i}=1" for i in range(100)), "at most 64"),
])
def test_queries_the_cli_cannot_express_are_refused(server: WebServer, query: str,
                                                    words: str) -> None:
    status, body = get(server, "/api/estimate?" + query)
    assert status == 400 and words in json.loads(body)["error"]


def test_no_request_reads_a_path_on_the_server(server: WebServer, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    assert cli(["--model", str(config), "--json"], capsys)[0] == 0  # the CLI would read it
    for query in (f"model={quote(str(config))}", f"model={quote(str(tmp_path))}",
                  "model=config.json", "model=../../etc/passwd", "model=org/not-in-catalog",
                  f"params=7B&hardware-file={quote(str(config))}",
                  f"params=7B&profile={quote(str(config))}", "model=upload:0123456789abcdef"):
        assert get(server, "/api/estimate?" + query)[0] == 400, query
    host, port = server.server_address[:2]
    for raw in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                "/static/app.js", "/app.js/../answers.py", "/answers.py", "/api/../style.css"):
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", raw)
        response = connection.getresponse()
        assert response.status == 404, raw
        assert b"root:" not in response.read()
        connection.close()


def test_only_loopback_host_names_and_the_own_page_are_served(server: WebServer) -> None:
    port = server.server_address[1]
    assert get(server, "/", {"Host": "attacker.example:80"})[0] == 403
    assert get(server, "/api/gpus", {"Host": f"localhost:{port}"})[0] == 200
    assert get(server, "/api/gpus", {"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    assert get(server, "/api/gpus", {"Origin": "https://attacker.example"})[0] == 403
    request = Request(server.url + "api/upload", data=upload_body([("config.json", b"{}", 2)]),
                      method="POST", headers={"Origin": "https://attacker.example"})
    with pytest.raises(HTTPError) as refused:
        urlopen(request, timeout=30)
    assert refused.value.code == 403


def test_the_page_is_self_contained(server: WebServer) -> None:
    assert get(server, "/")[0] == 200
    for route in ("/", "/app.js", "/style.css"):
        text = get(server, route)[1].decode()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, route


def test_catalog_search_and_gpus(server: WebServer) -> None:
    found = json.loads(get(server, "/api/models?q=llama%203.1%2070b")[1])["models"]
    assert found and all("70" in m["id"] and "3.1" in m["id"] for m in found)
    everything = json.loads(get(server, "/api/models")[1])["models"]
    assert len(everything) > len(found)
    assert get(server, "/api/models?q=a&q=b")[0] == 400
    gpus = json.loads(get(server, "/api/gpus")[1])["gpus"]
    assert {"id": "h100", "name": "NVIDIA H100 SXM5 80GB"}.items() <= next(
        g for g in gpus if g["id"] == "h100").items()


# --- uploads ---------------------------------------------------------------------------------

TINY_CONFIG = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
               "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
               "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
               "tie_word_embeddings": False}


def safetensors_file(path: Path) -> Path:
    """The tiny model's weights as bf16 safetensors (zeros), written the way the format says."""
    c = TINY_CONFIG
    shapes = {"model.embed_tokens.weight": [c["vocab_size"], c["hidden_size"]],
              "lm_head.weight": [c["vocab_size"], c["hidden_size"]],
              "model.norm.weight": [c["hidden_size"]]}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": [256, 256], p + "self_attn.k_proj.weight": [64, 256],
                   p + "self_attn.v_proj.weight": [64, 256], p + "self_attn.o_proj.weight": [256, 256],
                   p + "mlp.gate_proj.weight": [512, 256], p + "mlp.up_proj.weight": [512, 256],
                   p + "mlp.down_proj.weight": [256, 512], p + "input_layernorm.weight": [256],
                   p + "post_attention_layernorm.weight": [256]}
    header, at = {}, 0
    for name, shape in shapes.items():
        size = 2 * shape[0] * (shape[1] if len(shape) == 2 else 1)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [at, at + size]}
        at += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(at))
    return path


def upload_body(files: list[tuple[str, bytes, int]], folder: str | None = None) -> bytes:
    manifest = {"folder": folder,
                "files": [{"name": n, "length": len(d), "size": s} for n, d, s in files]}
    return json.dumps(manifest).encode() + b"\n" + b"".join(d for _, d, _ in files)


def same_apart_from_paths(api: str, cli_out: str, private: str, public: str) -> None:
    assert api.replace(private, public) == cli_out


def test_uploaded_folder_of_headers_is_the_cli_on_the_real_folder(
        server: WebServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    weights = safetensors_file(folder / "model.safetensors")
    data = weights.read_bytes()
    header = data[:8 + struct.unpack("<Q", data[:8])[0]]
    status, answer = post(server, upload_body(
        [("config.json", (folder / "config.json").read_bytes(), len((folder / "config.json")
                                                                   .read_bytes())),
         ("model.safetensors", header, len(data))], folder="tiny-llama"))
    assert status == 200 and answer["name"] == "tiny-llama"
    query = {"model": answer["model"], "dtype": "int8", "ctx": "2048", "gpu": "4090"}
    status, body = get(server, "/api/estimate?" + urlencode(query))
    code, out, _ = cli(["--model", str(folder), "--dtype", "int8", "--ctx", "2048", "--gpu", "4090",
                        "--json"], capsys)
    assert (status, code) == (200, 0)
    private = server.uploads.resolve(answer["model"].removeprefix("upload:"))[0]
    same_apart_from_paths(body.decode(), out, private, str(folder))
    assert json.loads(body)["model"]["stored_weights_bytes"] == len(data) - len(header)
    view = json.loads(get(server, "/api/view?" + urlencode(query))[1])
    assert view["command"].startswith("vramest --model tiny-llama --dtype int8")


def test_uploaded_gguf_header_is_the_cli_on_the_file(server: WebServer, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from test_readers_gguf import write_llama_gguf

    from vramest.readers.gguf import read_gguf

    path = write_llama_gguf(tmp_path / "tiny.gguf")
    data = path.read_bytes()
    header = data[:read_gguf(path).data_offset]
    status, answer = post(server, upload_body([("tiny.gguf", header, len(data))]))
    assert status == 200 and answer["name"] == "tiny.gguf"
    status, body = get(server, "/api/estimate?" + urlencode({"model": answer["model"]}))
    code, out, _ = cli(["--model", str(path), "--json"], capsys)
    assert (status, code) == (200, 0)
    private = server.uploads.resolve(answer["model"].removeprefix("upload:"))[0]
    same_apart_from_paths(body.decode(), out, private, str(path))
    status, answer = post(server, upload_body([("tiny.gguf", header[:200], len(data))]))
    assert status == 400 and "tiny.gguf's header is longer" in answer["error"]
    status, answer = post(server, upload_body([("tiny.gguf", b"GGUX" + header[4:], len(data))]))
    assert status == 400 and "does not start with the GGUF magic" in answer["error"]
    assert str(tmp_path) not in answer["error"]


def test_a_partial_gguf_is_accepted_exactly_when_its_header_was_sent(tmp_path: Path) -> None:
    from test_readers_gguf import write_llama_gguf

    from vramest.errors import InputError
    from vramest.readers import gguf
    from vramest.web.uploads import _check_headers

    path = write_llama_gguf(tmp_path / "tiny.gguf", tokens=3000)
    data = path.read_bytes()
    with path.open("rb") as handle:  # where the reader stops reading: the header's end
        cursor = gguf._Cursor(handle, len(data), "tiny.gguf")
        gguf._read(cursor, path)
    end = cursor.position
    for cut in [*range(0, end, max(1, end // 97)), end - 1, end, end + 1, len(data) - 1]:
        if cut >= end:
            _check_headers([("tiny.gguf", data[:cut], len(data))])
            continue
        with pytest.raises(InputError, match="header is longer"):
            _check_headers([("tiny.gguf", data[:cut], len(data))])


@pytest.mark.parametrize("files, folder, words", [
    ([("../config.json", b"{}", 2)], None, "not a plain file name"),
    ([("config.json", b"{}", 2)], "../up", "not a plain file name"),
    ([("weights.bin", b"x", 1)], None, "not a file the page reads"),
    ([("config.json", b"{}", 5)], None, "sent whole"),
    ([("config.json", b"[1]", 3)], None, "not an object"),
    ([("config.json", b"{}", 2), ("config.json", b"{}", 2)], "m", "twice"),
    ([("x.safetensors", b"\x01" * 8, 1 << 50)], None, "16 TiB"),
])
def test_bad_uploads_are_400(server: WebServer, files: list, folder: str | None,
                             words: str) -> None:
    status, answer = post(server, upload_body(files, folder))
    assert status == 400 and words in answer["error"], answer


def test_upload_size_is_bounded_before_reading(server: WebServer) -> None:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    connection.endheaders()  # no body sent: the answer must come without reading one
    response = connection.getresponse()
    assert response.status == 413
    assert "64 MiB" in json.loads(response.read())["error"]
    connection.close()
    assert post(server, b"not a manifest")[0] == 400
    manifest = upload_body([("config.json", b"{}", 2)])
    assert post(server, manifest + b"extra")[0] == 400


# --- invariants --------------------------------------------------------------------------------

_NAMES = st.sampled_from(["params", "model", "ctx", "batch", "gpu", "dtype", "max-ctx", "fit",
                          "hardware-file", "profile", "json", "help", "h", "-ngl", "", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.text(max_size=30)), max_size=6))
def test_every_query_is_an_estimate_argv_or_one_sentence(pairs: list[tuple[str, str]]) -> None:
    """Whatever the query, the CLI's parser sees only estimate flags in --name=value form (or
    switches), no value can name a file for it to read, and anything else is an InputError."""
    from vramest.errors import InputError
    from vramest.web.answers import estimate_parser, parse_query, query_names

    try:
        query = parse_query(urlencode(pairs))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    names = query_names()
    assert query.argv[:2] == ("estimate", "--json")
    for word in query.argv[2:]:
        name, eq, value = word.removeprefix("--").partition("=")
        assert word.startswith("--") and name in names and bool(eq) == names[name]
        assert name not in ("hardware-file",)
        if name == "profile":
            assert value.lower() == "none"
    with contextlib.suppress(InputError):
        estimate_parser().parse_args(list(query.argv))


def test_web_command_refuses_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["web", "--port", "99999"], capsys)
    assert code == 2 and err == ("vramest: --port '99999' is not a port; give a whole number from "
                                 "0 to 65535 (0: any free one).\n")
