"""What a hostile-input run found (issue 24), one test per mechanism: special files as inputs,
deep JSON, writers that replaced what was at the path, output errors, quadratic parsing, torn
JSONL tails, short calibrations, the lock's place, symlinks out of a model folder, and the
smaller ones. Each failed before the fix."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import stat
import struct
import sys
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vramest.cli import main
from vramest.errors import InputError

DEEP = "[" * 100_000


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()`'s result or exception, failing the test when it has not returned in time (a
    FIFO opened without O_NONBLOCK blocks for ever)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as exc:  # handed back to the test
            outcome.append(("raised", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still running after {seconds} s"
    kind, value = outcome[0]
    if kind == "raised":
        raise value
    return value


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text and len(text) < 600, text
    return text


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


def small_readers() -> dict[str, Callable[[Path], Any]]:
    from vramest.calibration.profile import load_profile
    from vramest.capacity import load_baseline, load_spec
    from vramest.hardware.database import load_hardware
    from vramest.readers.folder import read_json_object

    return {"hardware": load_hardware, "profile": load_profile, "baseline": load_baseline,
            "spec": load_spec, "config": read_json_object}


# --- 1. bounded reads of small files ---------------------------------------------------------


@pytest.mark.parametrize("reader", sorted(small_readers()))
def test_small_inputs_refuse_fifos_folders_and_devices(reader: str, fifo: Path,
                                                       tmp_path: Path) -> None:
    load = small_readers()[reader]
    for special in (fifo, tmp_path, Path("/dev/zero")):
        if not special.exists():
            continue
        with pytest.raises(InputError) as caught:
            within(5, lambda special=special: load(special))
        assert any(word in one_sentence(caught.value) for word in ("FIFO", "folder", "device")), \
            caught.value


def test_calibrate_report_of_a_fifo_is_one_sentence(fifo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert within(5, lambda: main(["calibrate", "--report", str(fifo)])) == 2
    assert "FIFO" in capsys.readouterr().err


def test_the_cap_holds_while_reading(tmp_path: Path) -> None:
    """stat() is not trusted (it says 0 bytes for /dev/zero): cap + 1 bytes are read."""
    from vramest.files import read_bytes

    big = tmp_path / "big.json"
    big.write_bytes(b" " * 1001)
    with pytest.raises(InputError, match="larger than 1000 bytes"):
        read_bytes(big, what="test", limit=1000)
    assert len(read_bytes(big, what="test", limit=1001)) == 1001


# --- 2. deep JSON, NaN ----------------------------------------------------------------------


@pytest.mark.parametrize("reader", sorted(small_readers()))
@pytest.mark.parametrize("text", [DEEP, '{"a": NaN}', '{"a": Infinity}', "1" * 5000])
def test_deep_or_non_finite_json_is_one_sentence(reader: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        small_readers()[reader](path)
    one_sentence(caught.value) if reader != "spec" else None


# --- 3. atomic writes over what is at the path ------------------------------------------------


def writers() -> dict[str, Callable[[Path], Any]]:
    from vramest.calibration.store import write_json_atomic
    from vramest.capacity import write_atomically as capacity_write
    from vramest.render.html import write_atomically as html_write

    def files_write(path: Path) -> None:
        from vramest.files import write_atomic

        write_atomic(path, b"new")

    return {"files": files_write,
            "html": lambda p: html_write(p, "<p>new</p>"),
            "capacity": lambda p: capacity_write(p, b"new"),
            "profile": lambda p: write_json_atomic(p, {"new": 1})}


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (os.lstat(p).st_mode, os.lstat(p).st_ino) for p in folder.iterdir()}


@pytest.mark.parametrize("writer", sorted(writers()))
def test_writers_never_replace_what_is_not_a_regular_file(writer: str, tmp_path: Path) -> None:
    write = writers()[writer]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    os.mkfifo(work / "fifo")
    (work / "folder").mkdir()
    (work / "link").symlink_to(outside / "secret")
    (work / "dangling").symlink_to(outside / "nothing-here")
    if os.geteuid() == 0:  # a device node of our own, never one under /dev
        os.mknod(work / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    before = listing(work), listing(outside)
    for name in sorted(before[0]):
        with pytest.raises(InputError) as caught:
            within(5, lambda name=name: write(work / name))
        one_sentence(caught.value)
    assert (listing(work), listing(outside)) == before
    assert (outside / "secret").read_text(encoding="utf-8") == "keep"


@pytest.mark.parametrize("writer", sorted(writers()))
def test_writers_keep_the_mode_of_the_file_they_replace(writer: str, tmp_path: Path) -> None:
    target = tmp_path / "private.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    writers()[writer](target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["private.json"]


@contextlib.contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder no one may write: mode 0500, and as root (who ignores modes) a read-only bind
    mount of it."""
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    mounted = False
    try:
        if os.geteuid() == 0:
            for command in (["mount", "--bind", str(folder), str(folder)],
                            ["mount", "-o", "remount,bind,ro", str(folder)]):
                if subprocess.run(command, capture_output=True, check=False).returncode:
                    pytest.skip("root cannot make a read-only bind mount here")
                mounted = True
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True, check=False)
        folder.chmod(0o700)


@pytest.mark.parametrize("writer", sorted(writers()))
def test_writers_into_a_read_only_folder(writer: str, tmp_path: Path) -> None:
    with read_only_folder(tmp_path) as folder:
        with pytest.raises(InputError) as caught:
            writers()[writer](folder / "out.json")
        one_sentence(caught.value)
        assert list(folder.iterdir()) == []


def test_plot_writer_refuses_a_fifo(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from vramest.render.plots.charts import calibration_figure
    from vramest.render.plots.matplotlib_render import save_figure

    os.mkfifo(tmp_path / "chart.png")
    figure = calibration_figure([("a", 1.0, 1.1)], title="t", unit="bytes")
    with pytest.raises(InputError, match="FIFO"):
        within(20, lambda: save_figure(figure, tmp_path / "chart.png"))


# --- 4. output errors -----------------------------------------------------------------------


@pytest.mark.parametrize("out", ["x" * 300 + ".html", "/proc/self/no-such/r.html", "."])
def test_report_output_errors_are_one_sentence(out: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["report", "--params", "1B", "--no-accuracy", "--html", out])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_sentence_and_leaves_no_temporary(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from vramest.files import write_atomic

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(InputError, match="disk is full"):
        write_atomic(tmp_path / "out.json", b"x")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_checks_its_output_before_measuring(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("measuring started")

    monkeypatch.setattr("vramest.calibration.device.select_backend", never)
    for out in (str(tmp_path), "/proc/self/no-such/p.json", "y" * 300 + ".json"):
        assert main(["calibrate", "--quick", "--out", out]) == 2
        assert "Traceback" not in capsys.readouterr().err


# --- 5. linear parsing, bounded echoes ------------------------------------------------------


@pytest.mark.parametrize("parse", ["params", "tokens", "bytes"])
def test_number_parsing_is_linear(parse: str) -> None:
    from vramest import units

    function = {"params": units.parse_params, "tokens": units.parse_tokens,
                "bytes": lambda t: units.parse_bytes(t, what="--x")}[parse]
    started = time.perf_counter()
    for text in ("1" + " " * 130_000 + "x", " " * 4 * 1024**2, "1" * 5000):
        with pytest.raises(InputError) as caught:
            function(text)
        assert len(str(caught.value)) < 300
    assert time.perf_counter() - started < 1.0


def test_long_arguments_are_refused_with_a_short_echo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "7B", "--gpu", "z" * 100_000]) == 2
    assert len(capsys.readouterr().err) < 400


# --- 6. torn JSONL tails ----------------------------------------------------------------------


def test_a_torn_tail_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    from vramest.calibration import store

    path = tmp_path / "p.measurements.jsonl"
    store.append_record(path, {"kind": "point", "key": "a", "status": "oom"})
    with path.open("a", encoding="utf-8") as f:
        f.write('{"kind": "point", "key": "torn", "sta')  # ENOSPC or power loss mid-line
    store.append_record(path, {"kind": "point", "key": "b", "status": "oom"})
    assert [r["key"] for r in store.read_records(path)] == ["a", "b"]


def test_append_line_refuses_a_fifo(fifo: Path) -> None:
    from vramest.files import append_line

    with pytest.raises(InputError, match="FIFO"):
        within(5, lambda: append_line(fifo, "{}"))


# --- 7. a short calibration's profile loads ---------------------------------------------------


def test_a_profile_with_nothing_held_out_loads_and_says_so(tmp_path: Path) -> None:
    from test_profile import profile_data

    from vramest.calibration.fit import FitOutcome, heldout_json
    from vramest.calibration.profile import load_profile
    from vramest.calibration.report import render_report
    from vramest.calibration.store import write_json_atomic

    one_model = FitOutcome(  # what calibrate() returns when one model was measured
        None, {}, {m: {"before": float("nan"), "after": float("nan"), "points": 0}  # type: ignore[arg-type]
                   for m in ("memory", "decode", "prefill")}, "leave one model size out", [])
    path = tmp_path / "short.json"
    write_json_atomic(path, profile_data(**heldout_json(one_model)))
    assert "NaN" not in path.read_text(encoding="utf-8")
    report = "\n".join(render_report(load_profile(path)))
    assert "not held out" in report


# --- 8. the lock beside the output ------------------------------------------------------------


def test_the_lock_is_beside_the_profile_whatever_tmpdir(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from vramest.calibration.store import profile_lock

    profile = tmp_path / "profiles" / "cpu.json"
    with profile_lock(profile):
        assert (tmp_path / "profiles" / ".cpu.json.lock").is_file()
        other = tmp_path / "other-tmp"
        other.mkdir()
        monkeypatch.setenv("TMPDIR", str(other))
        monkeypatch.setattr(tempfile, "tempdir", None)
        with pytest.raises(InputError, match="Another calibration"), profile_lock(profile):
            pass
        assert list(other.iterdir()) == []


# --- 9. model folders stay inside -------------------------------------------------------------


def _safetensors(header: dict[str, Any], data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_links_out_of_a_model_folder_are_not_followed(tmp_path: Path) -> None:
    from vramest.readers.folder import read_model_folder

    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    shard = _safetensors({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4)
    (outside / "sub" / "model.safetensors").write_bytes(shard)

    linked_config = tmp_path / "a"
    linked_config.mkdir()
    (linked_config / "config.json").symlink_to(outside / "config.json")

    linked_folder = tmp_path / "b"
    linked_folder.mkdir()
    (linked_folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (linked_folder / "sub").symlink_to(outside / "sub", target_is_directory=True)
    (linked_folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "sub/model.safetensors"}}), encoding="utf-8")
    for folder in (linked_config, linked_folder):
        with pytest.raises(InputError, match="outside the model folder"):
            read_model_folder(folder)


def test_a_hugging_face_cache_snapshot_is_still_read(tmp_path: Path) -> None:
    from vramest.readers.folder import read_model_folder

    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text('{"model_type": "llama"}', encoding="utf-8")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(Path("../../blobs/abc123"))
    assert read_model_folder(snapshot).config == {"model_type": "llama"}


def test_header_errors_never_echo_the_file_bytes(tmp_path: Path) -> None:
    from vramest.readers.safetensors_header import read_safetensors_header

    secret = b"SECRET!!"  # a linked-to file's first 8 bytes become the "header length"
    path = tmp_path / "x.safetensors"
    path.write_bytes(secret + b"rest")
    with pytest.raises(InputError) as caught:
        read_safetensors_header(path)
    assert str(struct.unpack("<Q", secret)[0]) not in str(caught.value)


# --- 10. the smaller ones --------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--engine", "--gpu", "--dtype", "--model", "--hardware-file",
                                  "--attn", "--profile"])
def test_flag_equals_double_dash(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", "7B", f"{flag}=--"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not list" not in err and "[]" not in err, err


@pytest.mark.parametrize("kwargs", [{"engine_options": [1]}, {"constants": "x"},
                                    {"hardware_file": "a\x00b", "gpu": "4090"},
                                    {"model": "m\x00"}, {"constants_source": 5}])
def test_api_wrong_types_are_input_errors(kwargs: dict[str, Any]) -> None:
    import vramest

    with pytest.raises(InputError):
        vramest.estimate(params="7B", **kwargs)


EVIL = "\x1b[2J\x1b]0;pwned\x07[x](https://e.invalid)<img src=x onerror=alert(1)>|\x01"


@pytest.fixture()
def evil_spec(tmp_path: Path) -> Path:
    hardware = tmp_path / "gpus.json"
    hardware.write_text(json.dumps({"devices": [{"name": EVIL, "memory_gib": 24,
                                                 "memory_bandwidth_gbs": 1000}]}),
                        encoding="utf-8")
    spec = tmp_path / "capacity.json"
    spec.write_text(json.dumps({"deployments": [{"name": EVIL, "params": "1B", "gpu": EVIL,
                                                 "hardware_file": str(hardware)}]}),
                    encoding="utf-8")
    return spec


def test_junit_xml_is_well_formed_with_control_characters(evil_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "junit.xml"
    assert main(["check", str(evil_spec), "--junit-xml", str(out)]) in (0, 1)
    ET.fromstring(out.read_bytes())


def test_markdown_shows_names_literally(evil_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    main(["check", str(evil_spec), "--markdown"])
    out = capsys.readouterr().out
    assert "\\<img" in out and "\x1b" not in out
    assert not re.search(r"(?<!\\)<img|(?<!\\)\]\(https", out)


def test_terminal_output_carries_no_escape_sequences(evil_spec: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    main(["check", str(evil_spec)])
    main(["gpus", "--hardware-file", str(evil_spec.with_name("gpus.json"))])
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out


def _gguf(kvs: list[bytes]) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def test_inspect_json_has_no_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-finite numbers in a GGUF or a config.json: refused, or printed as null; never as the
    NaN/Infinity that JSON parsers reject."""
    gguf = tmp_path / "x.gguf"
    kvs = [_gguf_string(b"general.architecture") + struct.pack("<I", 8) + _gguf_string(b"llama"),
           *(_gguf_string(key) + struct.pack("<II", 4, value) for key, value in (
               (b"llama.embedding_length", 64), (b"llama.block_count", 2),
               (b"llama.attention.head_count", 4), (b"llama.feed_forward_length", 128),
               (b"llama.vocab_size", 100))),
           _gguf_string(b"llama.attention.layer_norm_rms_epsilon") + struct.pack("<If", 6,
                                                                               float("nan")),
           _gguf_string(b"llama.rope.freq_base") + struct.pack("<Id", 12, float("inf"))]
    gguf.write_bytes(_gguf(kvs))
    config = tmp_path / "config.json"
    config.write_text('{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, '
                      '"num_attention_heads": 4, "vocab_size": 100, "rope_theta": NaN, '
                      '"rms_norm_eps": Infinity}', encoding="utf-8")

    def refuse(name: str) -> None:
        raise ValueError(name)

    for path in (gguf, config):
        code = main(["inspect", str(path), "--json"])
        captured = capsys.readouterr()
        assert code in (0, 2), captured.err
        if code == 0:
            json.loads(captured.out, parse_constant=refuse)


def test_cost_api_list_json_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "--api", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prices"]


def test_trace_chunks_are_bounded_before_tracing() -> None:
    from vramest.tracing.inference import trace_config

    with pytest.raises(InputError, match="forwards"):  # before torch is even imported
        within(30, lambda: trace_config({"model_type": "llama"}, ctx=1024**2, prefill_chunk=1))


class _Drip(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def drip_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_drip_hub_is_bounded_in_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vramest.readers.hub import REQUEST_TIMEOUTS, fetch_hub_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with drip_server() as url:
        started = time.perf_counter()
        with pytest.raises(InputError):
            within(30, lambda: fetch_hub_model("org/name", cache_dir=tmp_path, endpoint=url,
                                               timeout=0.5))
        assert time.perf_counter() - started < REQUEST_TIMEOUTS * 0.5 + 3


def test_gguf_metadata_has_a_total_cap(tmp_path: Path) -> None:
    from vramest.readers.gguf import MAX_KEPT_METADATA_BYTES, read_gguf

    value = b"v" * (1024 * 1024 - 16)
    count = MAX_KEPT_METADATA_BYTES // len(value) + 2
    path = tmp_path / "big.gguf"
    with path.open("wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, 0, count))
        for i in range(count):
            out.write(_gguf_string(b"k%d" % i) + struct.pack("<I", 8) + _gguf_string(value))
    with pytest.raises(InputError, match="MiB of metadata"):
        read_gguf(path)


@pytest.mark.slow
def test_calibration_is_quiet_even_for_warnings_attributed_elsewhere() -> None:
    pytest.importorskip("transformers")
    from vramest.calibration.harness import _quiet

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet():
            warnings.warn("MatMul8bitLt: inputs will be cast", UserWarning, stacklevel=1)
            warnings.warn("from bitsandbytes, attributed to the caller", UserWarning, stacklevel=2)
        warnings.warn("after the run", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after the run"]


@pytest.mark.parametrize("gpu", [4090, "4090"])
def test_a_spec_gpu_may_be_an_integer(gpu: object) -> None:
    from vramest.capacity import parse_spec

    spec = parse_spec({"deployments": [{"name": "a", "params": "1B", "gpu": gpu}]})
    assert spec.deployments[0].gpu == "4090"


def test_stdout_filter_keeps_text_and_newlines() -> None:
    from vramest.printable import PrintableStream

    buffer = io.StringIO()
    stream = PrintableStream(buffer)
    print("7B  ·  int4\tok\n\x1b[31mred", file=stream)  # type: ignore[arg-type]
    assert buffer.getvalue() == "7B  ·  int4\tok\n?[31mred\n"
    assert stream.isatty() is False and sys.stdout is not stream


def test_printable_shows_every_control_character_and_keeps_the_rest() -> None:
    """Over every code point: C0/C1 controls (but tab, newline and, where asked, carriage
    return), lone surrogates and U+FFFE/U+FFFF become "?"; everything else is kept as is."""
    from vramest.printable import printable

    def unprintable(code: int, keep: tuple[int, ...]) -> bool:
        return code not in keep and (code < 0x20 or 0x7F <= code < 0xA0
                                     or 0xD800 <= code < 0xE000 or code in (0xFFFE, 0xFFFF))

    text = "".join(map(chr, range(0x110000)))
    for keep_cr, keep in ((False, (9, 10)), (True, (9, 10, 13))):
        shown = printable(text, keep_cr=keep_cr)
        assert shown == "".join("?" if unprintable(ord(c), keep) else c for c in text)
        assert printable(text, keep_cr=keep_cr) == shown  # the same once remembered
