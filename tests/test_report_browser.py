"""The HTML report opened in a real browser: headless Chromium takes a screenshot, which must
not be blank, and the page must log nothing to the console.

Runs only under `make test-browser` (which installs Debian's chromium where it is missing and
sets VRAMEST_BROWSER_TESTS=1); elsewhere it is skipped.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

from vramest.cli import main

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.environ.get("VRAMEST_BROWSER_TESTS") != "1",
                       reason="browser test: run `make test-browser`"),
]

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 2400)


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium found; `make test-browser` installs Debian's chromium")


def screenshot(page: Path, out: Path) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [find_browser(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={out}", page.as_uri()],
            capture_output=True, text=True, timeout=120, check=False)


def png_rows(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, channels and the unfiltered rows of an 8-bit RGB or RGBA PNG (standard library)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + best) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "--model", "meta-llama/Llama-3.1-8B", "--dtype", "int4", "--gpu",
                 "4090,l40s", "--html", str(page)]) == 0
    shot = tmp_path / "shot.png"
    result = screenshot(page, shot)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines()
               if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, "the page logged to the console:\n" + "\n".join(console)
    width, height, channels, rows = png_rows(shot.read_bytes())
    assert (width, height) == WINDOW
    pixels = [row[i:i + 3] for row in rows[::8] for i in range(0, len(row), channels * 7)]
    assert len(set(pixels)) > 50, "the screenshot is (nearly) blank"
    drawn = sum(1 for p in pixels if p != b"\xff\xff\xff") / len(pixels)
    assert 0.02 < drawn < 0.9, f"{drawn:.1%} of the page is drawn"
