"""vramest web [--host 127.0.0.1] [--port 8000] [--open]: the estimate as a local web page."""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    p = sub.add_parser("web", help=help_text, description="The estimate as a page in your "
                       "browser: choose a catalog model or drop its config.json, safetensors or "
                       "GGUF file, move the sliders, and see the memory, fit, speed and chart "
                       "change. Standard library only, works offline; "
                       "/api/estimate?params=70B&dtype=int4 answers as --json does.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", default=8000, type=_port,
                   help="port to listen on (default 8000; 0 for any free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        import argparse

        raise argparse.ArgumentTypeError(f"--port {text!r} is not a port; give a whole number "
                                         "from 0 to 65535 (0: any free one).")
    return value


def run(args: argparse.Namespace) -> int:
    from vramest.web.server import serve

    try:
        serve(args.host, args.port, open_browser=args.open)
    except KeyboardInterrupt:
        print("vramest web: stopped")
    return 0
