"""A seeded, bounded fuzz run over every input vramest takes: the command line of every
subcommand, spec files, the Python API, the model readers, the small-file readers, the output
writers and the number parsers. Inputs are hostile on purpose: special files (FIFOs, folders,
a device node of our own, links out of the folder), deep and non-finite JSON, very long
values, control characters, and output paths that cannot be written.

Every input must end in a result or one `InputError` sentence (the CLI: exit status 0, 1 or
2, no traceback) within a time limit, and nothing outside the asked output path may change.
`make test` runs a few hundred inputs in all; `make fuzz` sets VRAMEST_FUZZ_N (10,000 per
target) and prints the counts. VRAMEST_FUZZ_SEED picks another sequence.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vramest.errors import InputError

SEED = int(os.environ.get("VRAMEST_FUZZ_SEED", "24"))
N = int(os.environ.get("VRAMEST_FUZZ_N", "0"))  # inputs per target; 0: each target's default
CALL_LIMIT_S = 10.0  # no single input may take longer (a hang fails here, not in CI's timeout)
RSS_GROWTH_LIMIT = 2 * 1024**3  # the run's peak memory may not grow by more


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM interrupts even a blocking open() or read() in this (the main) thread."""
    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    target: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    slowest_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def run(self, describe: str, call: Callable[[], Any]) -> None:
        """`call()` must return, or raise InputError, in time; anything else is a failure."""
        self.inputs += 1
        started = time.perf_counter()
        try:
            with time_limit(CALL_LIMIT_S):
                result = call()
            if result == "refused":
                self.refused += 1
            else:
                self.accepted += 1
        except InputError as exc:
            self.refused += 1
            text = str(exc)
            if "Traceback" in text or len(text) > 20_000:
                self.failures.append(f"{describe}: an error of {len(text)} characters")
        except Exception as exc:  # every other exception is what the fuzz finds
            self.failures.append(f"{describe}: {type(exc).__name__}: {str(exc)[:200]}")
        self.slowest_s = max(self.slowest_s, time.perf_counter() - started)

    def report(self) -> None:
        print(f"\nfuzz {self.target}: {self.inputs} inputs, {self.accepted} accepted, "
              f"{self.refused} refused with one sentence, {len(self.failures)} failures, "
              f"slowest {self.slowest_s:.2f} s")
        assert not self.failures, "\n".join(self.failures[:20])


def describe(value: Any) -> str:
    try:
        return repr(value)[:300]
    except ValueError:  # holds an integer of thousands of digits
        return f"<{type(value).__name__} holding a huge integer>"


def count(default: int) -> int:
    return N or default


# --- hostile material ----------------------------------------------------------------------


@dataclass(frozen=True)
class Specials:
    """Special files in a temporary folder; `outside` holds what no writer may touch."""

    root: Path
    outside: Path
    inputs: tuple[str, ...]  # paths a reader may be given
    outputs: tuple[str, ...]  # paths a writer may be given (nothing under /dev, ever)

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        out = {}
        for path in sorted(self.root.rglob("*")):
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode):
                out[str(path.relative_to(self.root))] = (info.st_mode, info.st_ino, info.st_size)
        return out


def write_good_files(s: Path) -> None:
    """Valid inputs the command lines start from (written again before each subcommand's run:
    an earlier input may have named one as its output)."""
    (s / "spec.yaml").write_text("deployments:\n  - name: a\n    params: 7B\n    gpu: 4090\n",
                                 encoding="utf-8")
    (s / "spec.toml").write_text('[[deployments]]\nname = "a"\nparams = "7B"\ngpu = "h100"\n',
                                 encoding="utf-8")
    (s / "good-config.json").write_text(json.dumps(
        {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
         "vocab_size": 1000}), encoding="utf-8")
    (s / "good-gpus.json").write_text(json.dumps(
        {"devices": [{"name": "Fuzz GPU \x1b[31m", "memory_gib": 24,
                      "memory_bandwidth_gbs": 900}]}), encoding="utf-8")


def make_specials(root: Path) -> Specials:
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"secret": 1}', encoding="utf-8")
    (outside / "sub").mkdir()
    s = root / "s"
    s.mkdir()
    os.mkfifo(s / "fifo.json")
    (s / "folder.json").mkdir()
    (s / "link.json").symlink_to(outside / "secret.json")
    (s / "dangling.json").symlink_to(outside / "missing.json")
    (s / "deep.json").write_text("[" * 100_000, encoding="utf-8")
    (s / "deep-obj.json").write_text('{"a":' * 50_000, encoding="utf-8")
    (s / "nan.json").write_text('{"devices": [{"name": "x", "memory_gib": NaN}]}', encoding="utf-8")
    (s / "bigint.json").write_text("9" * 10_000, encoding="utf-8")
    (s / "empty.json").write_bytes(b"")
    (s / "binary.json").write_bytes(bytes(range(256)) * 4)
    (s / "big.json").write_bytes(b" " * (17 * 1024**2))  # over every small-file cap
    levels = "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10)
                     + "]\n" for i in range(8))  # 10^9 leaves when walked, 9 lines when read
    (s / "yaml-bomb.yaml").write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + levels + "deployments:\n"
        "  - {name: *i, params: *i, gpu: *i, engine_options: {x: *i}, train: {method: *i}}\n"
        "  - *i\ndefaults: {ctx: *i, dtype: *i}\n", encoding="utf-8")
    write_good_files(s)
    (s / "readonly").mkdir()
    devices = []
    if os.geteuid() == 0:  # a device node of our own: zero and null, never /dev itself
        os.mknod(s / "zero.json", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        os.mknod(s / "null.html", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        devices = [str(s / "zero.json"), str(s / "null.html")]
    model = s / "model"
    model.mkdir()
    (model / "config.json").symlink_to(outside / "secret.json")
    (model / "sub").symlink_to(outside / "sub", target_is_directory=True)
    names = ("fifo.json", "folder.json", "link.json", "dangling.json", "deep.json",
             "deep-obj.json", "nan.json", "bigint.json", "empty.json", "binary.json", "big.json",
             "spec.yaml", "spec.toml", "yaml-bomb.yaml", "model", "missing.json",
             "good-config.json", "good-gpus.json")
    inputs = (*(str(s / n) for n in names), *devices, "/proc/self/status",
              "/proc/self/no-such", str(root), "x" * 300 + ".json", "a\x00b.json")
    outputs = (*(str(s / n) for n in ("fifo.json", "folder.json", "link.json", "dangling.json",
                                       "readonly/out.html", "new.html", "new.svg", "new.json")),
               *devices, "/proc/self/out.html", "/proc/self/no-such/out.json",
               "x" * 300 + ".html", str(s / "no-folder" / "out.json"), "")
    return Specials(root, outside, inputs, outputs)


WORDS = ("", " ", "-", "--", "---", "0", "-1", "1", "7B", "70b", "1.5B", "560M", "1.2T", "1e9",
         "1e309", "nan", "NaN", "inf", "-inf", "8k", "128K", "1M", "24GiB", "80GB", "2GiB", "10%",
         "0.1", "101%", "4090", "h100", "a100-80gb", "m2-ultra", "local", "none", "fp16", "bf16",
         "int4", "nf4", "q4_k_m", "gptq-int4-g64", "mxfp4", "vllm", "llamacpp", "hf", "generic",
         "sdpa", "eager", "flash", "llama", "qwen", "moe", "meta-llama/Llama-3.1-8B",
         "llama-3.1-70b", "org/not-a-model", "list", "gpt-4o", "lora", "qlora", "full", "adamw",
         "ctx", "batch", "１２３", "٣", "1_000", "0x10", "1,000", "7 B", "\x1b[31mred\x1b[0m",
         "\x07", "a|b", "<b>x</b>", "[x](https://e.invalid)", "\udcff", "\ud800", "é" * 50, "0" * 400 + "1")


def hostile_text(rng: random.Random, specials: Specials) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(WORDS)
    if roll < 0.6:
        return rng.choice(specials.inputs)
    if roll < 0.7:
        return rng.choice(specials.outputs)
    if roll < 0.8:  # long runs that made regexes backtrack
        n = rng.choice((1_000, 10_000, 130_000))
        return rng.choice(("1" + " " * n + "x", " " * n, "9" * n, "a" * n, "1" + "." * n))
    if roll < 0.9:
        return "".join(rng.choice("0123456789.eEkKmMbBgGtTiI%- _+\t\x00") for _ in
                       range(rng.randint(1, 24)))
    return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 30)))


def hostile_value(rng: random.Random, specials: Specials, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.4:
        return hostile_text(rng, specials)
    if roll < 0.55:
        return rng.choice((0, 1, -1, 7, 4090, 2**63, -(2**63), 10**30, 10**5000 if depth else 3))
    if roll < 0.65:
        return rng.choice((0.0, 0.5, 1.5, -1.0, 1e308, float("nan"), float("inf"), 1e-320))
    if roll < 0.72:
        return rng.choice((True, False, None))
    if roll < 0.86 and depth < 3:
        return [hostile_value(rng, specials, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3:
        return {hostile_text(rng, specials)[:20]: hostile_value(rng, specials, depth + 1)
                for _ in range(rng.randint(0, 3))}
    return object()


@pytest.fixture()
def specials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Specials]:
    """The special files, the working directory in the temporary folder, no network, and no
    torch work and no server (tracing, measuring and serving stop with a sentence where they would
    start)."""
    made = make_specials(tmp_path)
    monkeypatch.chdir(made.root / "s")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VRAMEST_PROFILE_DIR", str(made.root / "profiles"))

    def no_torch() -> None:
        raise InputError("the fuzz run does not trace")

    def no_measuring(*args: Any, **kwargs: Any) -> None:
        raise InputError("the fuzz run does not measure")

    def no_serving(*args: Any, **kwargs: Any) -> None:
        raise InputError("the fuzz run does not serve")

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails: calibrate stops
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr("vramest.tracing.inference._import_torch", no_torch)
    monkeypatch.setattr("vramest.tracing.training._import_torch", no_torch)
    monkeypatch.setattr("vramest.calibration.device.select_backend", no_measuring)
    monkeypatch.setattr("vramest.web.server.serve", no_serving)  # serves until interrupted
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outside_before = made.snapshot()
    yield made
    after = made.snapshot()
    for name, (mode, inode, size) in outside_before.items():  # specials stay what they were
        if name.startswith("outside/") or not stat.S_ISREG(mode):
            assert after.get(name) == (mode, inode, size), f"{name} was replaced or changed"
    assert (made.outside / "secret.json").read_text(encoding="utf-8") == '{"secret": 1}'
    assert sorted(p.name for p in made.outside.iterdir()) == ["secret.json", "sub"]
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert growth < RSS_GROWTH_LIMIT, f"peak memory grew by {growth / 1024**3:.1f} GiB"


# --- the command line -------------------------------------------------------------------------


def subcommand_flags() -> dict[str, list[tuple[str, bool]]]:
    """Each subcommand's flags, and whether each takes a value."""
    import argparse

    from vramest.commands import COMMANDS
    from vramest.commands.parser import build_parser

    flags: dict[str, list[tuple[str, bool]]] = {}
    for name in COMMANDS:
        parser = build_parser(only=name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        flags[name] = [(option, action.nargs != 0) for action in sub.choices[name]._actions
                       for option in action.option_strings if option not in ("-h", "--help")]
    return flags


# A working command line per subcommand, so that most inputs change one or two things in it
# and reach past the argument parser.
BASES = {"estimate": ["--params", "7B"], "check": ["spec.toml"], "inspect": ["good-config.json"],
         "report": ["--params", "1B", "--no-accuracy", "--html", "new.html"],
         "plot": ["--params", "1B"], "recommend": ["--params", "7B"], "train": ["--params", "1B"],
         "cost": ["--params", "7B", "--gpu", "4090"], "tiers": [], "gpus": [], "models": [],
         "hw": [], "trace": ["--model", "llama-3.1-8b"], "calibrate": ["--report", "nan.json"],
         "web": ["--port", "0"]}


def random_argv(rng: random.Random, specials: Specials, command: str,
                flags: list[tuple[str, bool]]) -> list[str]:
    argv = [command] if command != "estimate" or rng.random() < 0.5 else []
    if rng.random() < 0.7:
        argv += BASES.get(command, [])
    if command == "calibrate" and rng.random() < 0.5:
        argv += ["--report", rng.choice(specials.inputs)]
    for _ in range(rng.randint(0, 6) if rng.random() < 0.3 else rng.randint(1, 2)):
        roll = rng.random()
        if roll < 0.8 and flags:
            flag, takes_value = rng.choice(flags)
            if not takes_value:
                argv.append(flag)
            elif rng.random() < 0.2:
                argv.append(f"{flag}={hostile_text(rng, specials)}")
            else:
                argv += [flag, hostile_text(rng, specials)]
        elif roll < 0.9:
            argv.append(hostile_text(rng, specials))
        else:
            argv.append(rng.choice(("--", "-x", "--no-such-flag", "--params=--")))
    return argv


def test_fuzz_command_line(specials: Specials, capsys: pytest.CaptureFixture[str]) -> None:
    from vramest.cli import main

    rng = random.Random(SEED)
    flags = subcommand_flags()
    commands = sorted(flags)
    tallies = {name: Tally(f"cli {name}") for name in commands}
    per_command = count(25)
    for command in commands:
        write_good_files(specials.root / "s")
        tally = tallies[command]
        for _ in range(per_command):
            argv = random_argv(rng, specials, command, flags[command])

            def call(argv: list[str] = argv) -> str:
                code = main(argv)
                if code not in (0, 1, 2):
                    raise AssertionError(f"exit status {code}")
                err = capsys.readouterr().err
                if "Traceback" in err or (code == 2 and err.count("\n") > 40):
                    raise AssertionError(err[-300:])
                return "refused" if code == 2 else "ran"

            tally.run(repr(argv)[:300], call)
            capsys.readouterr()
    for tally in tallies.values():
        tally.report()


# --- spec files ---------------------------------------------------------------------------------


def random_spec(rng: random.Random, specials: Specials) -> Any:
    from vramest.capacity.spec import DEPLOYMENT_KEYS

    def deployment() -> dict[str, Any]:
        keys = rng.sample(DEPLOYMENT_KEYS, rng.randint(0, 6))
        base: dict[str, Any] = {"name": hostile_text(rng, specials)[:40], "params": "1B",
                                "gpu": rng.choice(("h100", 4090, "4090"))}
        base.update({k: hostile_value(rng, specials) for k in keys})
        return base

    roll = rng.random()
    if roll < 0.7:
        spec: Any = {"deployments": [deployment() for _ in range(rng.randint(1, 3))]}
        if rng.random() < 0.3:
            spec["defaults"] = {k: hostile_value(rng, specials) for k in
                                rng.sample(DEPLOYMENT_KEYS, 2)}
        return spec
    return hostile_value(rng, specials)


def test_fuzz_spec_files(specials: Specials) -> None:
    import vramest

    rng = random.Random(SEED + 1)
    tally = Tally("spec files")
    folder = specials.root / "specs"
    folder.mkdir()
    for i in range(count(60)):
        spec = random_spec(rng, specials)
        suffix = rng.choice((".json", ".yaml", ".toml", ".json"))
        path = folder / f"spec{i}{suffix}"
        try:
            text = json.dumps(spec, default=str)
        except ValueError:  # an integer of thousands of digits: JSON text of one, then
            text = '{"deployments": [{"name": "a", "params": ' + "9" * 5000 + "}]}"
        if rng.random() < 0.2:  # a cut or bit-flipped file
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice(("", "\x00", "[" * 1000, "'")) + text[cut:]
        path.write_text(text, encoding="utf-8", errors="replace")
        tally.run(f"{path.name}: {text[:200]!r}", lambda path=path: vramest.check(path))
        if isinstance(spec, dict):
            tally.run(f"dict {describe(spec)}", lambda spec=spec: vramest.check(spec))
    tally.report()


# --- the Python API -----------------------------------------------------------------------------


def test_fuzz_api(specials: Specials) -> None:
    import inspect as pyinspect

    import vramest

    rng = random.Random(SEED + 2)
    names = [p for p in pyinspect.signature(vramest.estimate).parameters if p != "shape_overrides"]
    names += ["num_layers", "hidden_size", "no_such_argument"]
    tally = Tally("api estimate")
    for _ in range(count(150)):
        kwargs = {"params": rng.choice(("1B", "7B", hostile_text(rng, specials)))}
        for name in rng.sample(names, rng.randint(0, 5)):
            kwargs[name] = hostile_value(rng, specials)
        tally.run(f"estimate({describe(kwargs)})", lambda kwargs=kwargs: vramest.estimate(**kwargs))
    tally.report()


# --- model readers ------------------------------------------------------------------------------


def _safetensors() -> bytes:
    header = {"__metadata__": {"format": "pt"},
              "model.embed_tokens.weight": {"dtype": "F16", "shape": [8, 4], "data_offsets": [0, 64]},
              "lm_head.weight": {"dtype": "BF16", "shape": [8, 4], "data_offsets": [64, 128]}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(128)


def _gguf() -> bytes:
    def string(text: bytes) -> bytes:
        return struct.pack("<Q", len(text)) + text

    kvs = [string(b"general.architecture") + struct.pack("<I", 8) + string(b"llama"),
           string(b"llama.embedding_length") + struct.pack("<II", 4, 64),
           string(b"llama.block_count") + struct.pack("<II", 4, 2),
           string(b"llama.attention.head_count") + struct.pack("<II", 4, 4),
           string(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3)
           + b"".join(string(t) for t in (b"a", b"b", b"c"))]
    info = string(b"token_embd.weight") + struct.pack("<IQQIQ", 2, 64, 3, 1, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs) + info
    return head + bytes(-len(head) % 32) + bytes(64 * 3 * 2)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.3 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif roll < 0.5:
            out = out[:rng.randint(0, len(out))]
        elif roll < 0.7 and len(out) >= 8:  # a length field made huge or odd
            at = rng.randrange(0, max(1, len(out) - 8))
            out[at:at + 8] = struct.pack("<Q", rng.choice((0, 1, 2**31, 2**63, 2**64 - 1,
                                                            len(out) * 4)))
        else:
            at = rng.randint(0, len(out))
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


def test_fuzz_model_readers(specials: Specials) -> None:
    from vramest.readers.inspect import inspect_path

    rng = random.Random(SEED + 3)
    tally = Tally("model readers")
    folder = specials.root / "models"
    folder.mkdir()
    seeds = {".safetensors": _safetensors(), ".gguf": _gguf(),
             ".json": json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                                  "num_attention_heads": 4, "vocab_size": 100}).encode()}
    for i in range(count(150)):
        suffix = rng.choice(sorted(seeds))
        path = folder / f"m{i}{suffix}"
        path.write_bytes(mutate(rng, seeds[suffix]))
        tally.run(f"{path.name}", lambda path=path: inspect_path(path))
        if i % 10 == 0:  # a folder whose index names shards, hostile ones included
            model = folder / f"dir{i}"
            model.mkdir()
            (model / "config.json").write_bytes(seeds[".json"])
            (model / "model.safetensors").write_bytes(mutate(rng, seeds[".safetensors"]))
            weight_map = {"w": rng.choice(("model.safetensors", "../outside/secret.json",
                                           "/etc/passwd", "sub/x.safetensors", "a\\b",
                                           hostile_text(rng, specials)))}
            (model / "model.safetensors.index.json").write_text(
                json.dumps({"weight_map": weight_map}), encoding="utf-8")
            tally.run(f"{model.name} {weight_map}", lambda model=model: inspect_path(model))
    for path in specials.inputs:
        tally.run(f"inspect {path[:80]}", lambda path=path: inspect_path(path))
    tally.report()


# --- small-file readers ---------------------------------------------------------------------------


def small_readers() -> dict[str, Callable[[str], Any]]:
    from vramest.calibration.profile import load_profile
    from vramest.calibration.store import read_records
    from vramest.capacity import load_baseline, load_spec
    from vramest.hardware.database import load_hardware
    from vramest.readers.folder import read_json_object

    return {"hardware": load_hardware, "profile": load_profile, "baseline": load_baseline,
            "spec": load_spec, "config": lambda p: read_json_object(Path(p)),
            "measurements": lambda p: read_records(Path(p))}


def random_json_text(rng: random.Random, specials: Specials) -> str:
    roll = rng.random()
    depth = rng.choice((10, 1_000, 100_000))
    if roll < 0.3:
        return rng.choice(("[", "{\"a\":")) * depth
    if roll < 0.5:
        return rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, '"\\ud800"'))
    try:
        return json.dumps(hostile_value(rng, specials), default=str)
    except ValueError:  # an integer of thousands of digits
        return "0"


def test_fuzz_small_file_readers(specials: Specials) -> None:
    rng = random.Random(SEED + 4)
    readers = small_readers()
    tally = Tally("small-file readers")
    folder = specials.root / "small"
    folder.mkdir()
    for i in range(count(150)):
        name, read = rng.choice(sorted(readers.items()))
        if rng.random() < 0.3:
            path = rng.choice(specials.inputs)
        else:
            path = str(folder / f"f{i}{rng.choice(('.json', '.yaml', '.toml', '.jsonl'))}")
            Path(path).write_text(random_json_text(rng, specials), encoding="utf-8",
                                  errors="replace")
        tally.run(f"{name} {path[:100]}", lambda read=read, path=path: read(path))
    tally.report()


# --- writers ---------------------------------------------------------------------------------------


def test_fuzz_writers(specials: Specials) -> None:
    from vramest.calibration.store import append_record, write_json_atomic
    from vramest.capacity import write_atomically
    from vramest.files import check_writable, write_atomic
    from vramest.render.html import write_atomically as write_html

    writers: dict[str, Callable[[str], Any]] = {
        "files": lambda p: write_atomic(p, b"x"), "html": lambda p: write_html(p, "<p>x</p>"),
        "capacity": lambda p: write_atomically(p, b"x"),
        "profile": lambda p: write_json_atomic(Path(p), {"x": 1}),
        "measurements": lambda p: append_record(Path(p), {"kind": "point"}),
        "check": lambda p: check_writable(p)}
    rng = random.Random(SEED + 5)
    tally = Tally("writers")
    readonly = specials.root / "s" / "readonly"
    readonly.chmod(0o500)
    try:
        for _ in range(count(150)):
            name, write = rng.choice(sorted(writers.items()))
            path = rng.choice(specials.outputs)
            tally.run(f"{name} {path[:100]!r}", lambda write=write, path=path: write(path))
    finally:
        readonly.chmod(0o700)
    tally.report()


# --- number parsers ---------------------------------------------------------------------------------


def test_fuzz_parsers(specials: Specials) -> None:
    from vramest import units
    from vramest.advice.cost import parse_amount
    from vramest.capacity import parse_tolerance
    from vramest.inference.placement import parse_reserve

    parsers: dict[str, Callable[[Any], Any]] = {
        "params": units.parse_params, "tokens": units.parse_tokens,
        "bytes": lambda t: units.parse_bytes(t, what="--x"),
        "int": lambda t: units.parse_positive_int(t, what="--x"), "reserve": parse_reserve,
        "tolerance": parse_tolerance, "amount": lambda t: parse_amount(t, "--x")}
    rng = random.Random(SEED + 6)
    tally = Tally("parsers")
    for _ in range(count(600)):
        name, parse = rng.choice(sorted(parsers.items()))
        value = hostile_value(rng, specials) if rng.random() < 0.3 else hostile_text(rng, specials)
        started = time.perf_counter()
        tally.run(f"{name} {describe(value)}", lambda parse=parse, value=value: parse(value))
        if time.perf_counter() - started > 0.5:
            tally.failures.append(f"{name} {describe(value)}: slow")
    tally.report()
