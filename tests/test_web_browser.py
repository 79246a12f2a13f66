"""`vramest web` driven in headless Chromium: choose a model, move the context slider with the
keyboard, switch the GPU; after each step the figures on the page must equal `vramest … --json`
for the same inputs. Also: a screenshot that is not blank, the CLI's sentence on the page for
bad input, no console errors, and no sideways scrolling at phone width.

The browser is driven through chromedriver with the W3C WebDriver protocol over urllib (no
selenium). Runs only under `make test-browser` (which installs Debian's chromium and
chromium-driver and sets VRAMEST_BROWSER_TESTS=1); elsewhere it is skipped. With
VRAMEST_WEB_SCREENSHOT=FILE the desktop screenshot is also written there (docs/img/web.png).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl
from urllib.request import Request, urlopen

import pytest
from test_report_browser import find_browser, png_rows

from vramest.cli import main
from vramest.units import format_bytes
from vramest.web.server import WebServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.environ.get("VRAMEST_BROWSER_TESTS") != "1",
                       reason="browser test: run `make test-browser`"),
]

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
ARROW_RIGHT = "\ue014"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1700"]
LABELS = {"weights": "weights", "kv_cache": "KV cache", "activations": "activations",
          "overhead": "overhead"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Driver:
    """The few WebDriver commands this test needs, as plain HTTP calls to chromedriver."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        prefix = f"{self.base}/session/{self.session}" if self.session else f"{self.base}/session"
        request = Request(prefix + path, data=data, method=method,
                          headers={"Content-Type": "application/json"})
        try:
            with urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read()[:500]!r}") from None

    def run(self, script: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        return found[ELEMENT]

    def type(self, css: str, text: str, *, clear: bool = True) -> None:
        element = self.find(css)
        if clear:
            self.call("POST", f"/element/{element}/clear", {})
        self.call("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return self.call("GET", f"/element/{self.find(css)}/text")


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    web = WebServer("127.0.0.1", 0, quiet=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    yield web
    web.shutdown()
    web.server_close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    chromedriver = shutil.which("chromedriver")
    if chromedriver is None:
        pytest.fail("no chromedriver found; `make test-browser` installs Debian's chromium-driver")
    port = free_port()
    process = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    drive = Driver(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urlopen(f"{drive.base}/status", timeout=2) as response:
                    if json.loads(response.read())["value"]["ready"]:
                        break
            except (URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.2)
        with tempfile.TemporaryDirectory() as profile:
            options = {"binary": find_browser(),
                       "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
            started = drive.call("POST", "", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options,
                "goog:loggingPrefs": {"browser": "ALL"}}}})
            drive.session = started["sessionId"]
            try:
                yield drive
            finally:
                drive.call("DELETE", "")
    finally:
        process.terminate()
        process.wait(timeout=30)


def settle(driver: Driver, expected: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Wait until the page has answered its current inputs; return the query it asked."""
    deadline = time.monotonic() + timeout
    while True:
        state, query, pending = driver.run(
            "return [document.body.dataset.state, document.body.dataset.query, "
            "new URLSearchParams(location.search).toString()]")
        if state in ("ready", "error") and query == pending and (
                expected is None or expected.items() <= dict(parse_qsl(query)).items()):
            return query
        assert time.monotonic() < deadline, f"the page did not answer {expected} ({state}, {query})"
        time.sleep(0.05)


def cli_flags(query: str) -> list[str]:
    """The page's query as the command line's flags."""
    argv: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        argv += [f"--{name}"] if value == "1" and name in ("max-ctx", "flash-attn", "fit") \
            else [f"--{name}", value]
    return argv


def cli_answer(query: str) -> tuple[int, dict[str, Any] | None, str]:
    """`vramest FLAGS --json` for the page's query: exit status, the JSON, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*cli_flags(query), "--json"])
    return code, json.loads(out.getvalue()) if code == 0 else None, err.getvalue()


def cli_text(query: str) -> tuple[int, str]:
    """`vramest FLAGS` as the terminal shows it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(cli_flags(query))
    return code, out.getvalue()


def check_figures(driver: Driver, query: str, cli_query: str | None = None) -> dict[str, Any]:
    """Every figure on the page equals the CLI's JSON for the page's own inputs (or for
    `cli_query`, where the page's model is an upload)."""
    code, expected, err = cli_answer(cli_query or query)
    assert code == 0, err
    page = driver.run("""
        const rows = [...document.querySelectorAll('#parts tbody tr')];
        return {parts: rows.map(r => [r.dataset.part, r.cells[1].textContent,
                                      Number(r.cells[1].dataset.bytes)]),
                total: [document.getElementById('total').textContent,
                        Number(document.getElementById('total').dataset.bytes)],
                headroom: document.getElementById('headroom')?.textContent ?? null,
                verdict: document.getElementById('verdict')?.textContent ?? null,
                command: document.getElementById('command').textContent,
                headline: document.getElementById('headline').textContent,
                fitLines: document.getElementById('fit-section').hidden ? null :
                          document.getElementById('fit-lines').textContent,
                gpus: document.getElementById('gpus-section').hidden ? null :
                      [...document.querySelectorAll('#gpus-table tbody tr')].map(
                        r => [...r.cells].map(c => c.textContent)),
                error: document.getElementById('error').hidden};""")
    code, text = cli_text(cli_query or query)
    assert code == 0 and page["headline"] == text.splitlines()[0]
    memory = expected["memory"]
    assert page["parts"] == [[name, format_bytes(memory[name]), memory[name]] for name in LABELS]
    assert page["total"] == [format_bytes(memory["total"]), memory["total"]]
    assert page["error"] is True  # no error shown
    if "fit" in expected:
        fit = expected["fit"]
        assert page["headroom"] == format_bytes(fit["headroom_bytes"])
        assert page["verdict"] == ("fits" if fit["fits"] else "does NOT fit")
        # the fit and speed lines are the terminal's, figure for figure
        assert page["fitLines"] and page["fitLines"] in text
    if "gpus" in expected:
        fitting = [g for g in expected["gpus"] if g["fits"]]
        assert [row[0] for row in page["gpus"]] == [g["gpu"] for g in expected["gpus"]]
        assert [row[1:4] for row in page["gpus"] if row[1] != "—"] == [
            [str(g["num_gpus"]), format_bytes(g["per_gpu_bytes"]), format_bytes(g["headroom_bytes"])]
            for g in fitting]
    if cli_query is None:
        words = [w for name, value in parse_qsl(query) for w in (f"--{name}", value)]
        assert shlex.split(page["command"]) == ["vramest", *words]
    return expected


def test_the_page_answers_as_the_cli(server: WebServer, driver: Driver, tmp_path: Any) -> None:
    driver.call("POST", "/url", {"url": server.url + "?model=meta-llama/Llama-3.1-8B&dtype=int4"})
    expected = check_figures(driver, settle(driver, {"model": "meta-llama/Llama-3.1-8B",
                                                     "dtype": "int4"}))
    assert len(expected["gpus"]) >= 10  # where it fits: the table of common GPUs

    # choose a model from the catalog by typing in the picker
    driver.type("#model", "Qwen/Qwen2.5-14B")
    check_figures(driver, settle(driver, {"model": "Qwen/Qwen2.5-14B"}))

    # move the context slider with the keyboard: 4096 → 6144 → 8192 → 12288 → 16384
    slider = driver.find("#ctx-slider")
    driver.call("POST", f"/element/{slider}/value", {"text": ARROW_RIGHT * 4})
    query = settle(driver, {"ctx": "16384"})
    assert driver.text("#ctx-out") == "16k tokens"
    check_figures(driver, query)

    # switch the GPU: one H100, then two RTX 4090s
    driver.click('#gpu option[value="h100"]')
    expected = check_figures(driver, settle(driver, {"gpu": "h100"}))
    assert expected["fit"]["gpu"] == "NVIDIA H100 SXM5 80GB"
    driver.click('#gpu option[value="4090"]')
    driver.type("#num-gpus", "2")
    expected = check_figures(driver, settle(driver, {"gpu": "4090", "num-gpus": "2"}))
    assert expected["fit"]["num_gpus"] == 2
    deadline = time.monotonic() + 30
    while driver.run("return document.body.dataset.chart") != driver.run(
            "return document.body.dataset.query"):
        assert time.monotonic() < deadline, "the chart was not drawn"
        time.sleep(0.05)
    assert "NVIDIA GeForce RTX 4090" in driver.run(
        "return document.getElementById('chart').innerHTML")

    # the link reproduces the answer
    link = driver.run("return location.href")
    driver.call("POST", "/url", {"url": link})
    assert settle(driver) == query + "&gpu=4090&num-gpus=2"
    check_figures(driver, link.split("?", 1)[1])

    shot = base64.b64decode(driver.call("GET", "/screenshot"))
    _, _, channels, rows = png_rows(shot)
    pixels = [row[i:i + 3] for row in rows[::8] for i in range(0, len(row), channels * 7)]
    assert len(set(pixels)) > 50, "the screenshot is (nearly) blank"
    drawn = sum(1 for p in pixels if p not in (b"\xff\xff\xff", b"\xfa\xfa\xfb")) / len(pixels)
    assert 0.05 < drawn < 0.9, f"{drawn:.1%} of the page is drawn"
    if os.environ.get("VRAMEST_WEB_SCREENSHOT"):
        with open(os.environ["VRAMEST_WEB_SCREENSHOT"], "wb") as handle:
            handle.write(shot)

    # the command line can be copied (the clipboard, or a selection where it is refused)
    driver.click("#copy")
    deadline = time.monotonic() + 10
    while driver.text("#copy-status") != "copied":
        assert time.monotonic() < deadline, "the copy button did nothing"
        time.sleep(0.05)

    # bad input: the CLI's own sentence appears on the page
    driver.type("#ctx", "-5")
    query = settle(driver, {"ctx": "-5"})
    code, _, err = cli_answer(query)
    assert code == 2
    assert driver.text("#error") == err.removeprefix("vramest: ").strip()
    assert driver.run("return document.body.dataset.state") == "error"

    logs = driver.call("POST", "/se/log", {"type": "browser"})
    severe = [entry["message"] for entry in logs if entry["level"] == "SEVERE"
              and "400 (Bad Request)" not in entry["message"]]
    assert not severe, severe


def test_phone_width_does_not_scroll_sideways(server: WebServer, driver: Driver) -> None:
    driver.call("POST", "/window/rect", {"width": 390, "height": 844})
    try:
        driver.call("POST", "/url", {"url": server.url + "?params=70B&dtype=int4&gpu=h100"})
        settle(driver, {"params": "70B"})
        wide = driver.run("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert wide[0] <= wide[1], f"the page is {wide[0]} px wide in a {wide[1]} px window"
        labelled = driver.run("""return [...document.querySelectorAll('input, select')]
            .filter(e => !e.labels.length).map(e => e.id || e.outerHTML);""")
        assert labelled == [], f"inputs without a label: {labelled}"
    finally:
        driver.call("POST", "/window/rect", {"width": 1280, "height": 1700})


def test_dropped_files_are_read_as_the_cli_reads_the_folder(server: WebServer, driver: Driver,
                                                            tmp_path: Any) -> None:
    from urllib.parse import urlencode

    from test_web import TINY_CONFIG, safetensors_file

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    safetensors_file(folder / "model.safetensors")
    driver.call("POST", "/url", {"url": server.url + "?dtype=int8&ctx=2048&gpu=4090"})
    settle(driver)
    driver.click('input[name="source"][value="file"]')
    (folder / "tokenizer.json").write_text("{}")  # not sent: the page keeps to what is read
    driver.type("#folder", str(folder), clear=False)
    deadline = time.monotonic() + 30
    while not dict(parse_qsl(query := settle(driver))).get("model", "").startswith("upload:"):
        assert time.monotonic() < deadline, f"the upload was not used: {query}"
        time.sleep(0.05)
    assert driver.text("#file-status").startswith("Using tiny")
    cli_query = urlencode({**dict(parse_qsl(query)), "model": str(folder)})
    expected = check_figures(driver, query, cli_query)
    assert expected["model"]["source"] == "safetensors-folder"
    assert driver.text("#command") == "vramest --model tiny --dtype int8 --ctx 2048 --gpu 4090"
