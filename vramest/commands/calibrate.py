"""vramest calibrate: measure real models on this machine, fit the constants, write a profile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vramest.frozen import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction, help_text: str) -> None:
    from vramest.commands.common import positive_float

    p = sub.add_parser("calibrate", help=help_text, description=help_text + ". Each measurement "
                       "is appended to a JSONL beside the profile as it is taken; running again "
                       "resumes where a run stopped.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="what to calibrate (default: CUDA if torch sees it, else the CPU)")
    p.add_argument("--quick", action="store_true", help="a small grid (under 2 minutes on a CPU)")
    p.add_argument("--max-minutes", type=positive_float("--max-minutes", "a number of minutes"),
                   help="stop measuring after this long, fit what "
                   "was measured (a later run resumes)")
    p.add_argument("--out", help="profile to write (default: <profile dir>/<device>.json, where "
                   "estimates find it; the profile dir is $VRAMEST_PROFILE_DIR or "
                   "~/.config/vramest/profiles)")
    p.add_argument("--report", metavar="FILE", help="print the fit stored in profile FILE "
                   "(constants before → after, held-out errors) and exit")
    p.add_argument("--plot", metavar="OUT", help="with --report: predicted against measured, "
                   "before and after the fit, one chart per metric (OUT.png/.svg; .svg needs no "
                   "matplotlib)")
    p.add_argument("--fresh", action="store_true", help="discard earlier measurements of --out")
    p.add_argument("--no-quantized", action="store_true", help="skip bitsandbytes formats")
    p.add_argument("--cache-dir", help="where the generated models are saved "
                   "(default ~/.cache/vramest/calibration-models)")
    add_distributed_arguments(p)


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    import argparse  # for SUPPRESS

    from vramest.commands.common import positive_float

    g = p.add_argument_group("several GPUs or nodes (torch.distributed; see docs/calibration.md)")
    g.add_argument("--nproc-per-node", type=_count("--nproc-per-node"), metavar="N",
                   help="calibrate over N processes on this node (one per GPU; gloo processes "
                   "on a CPU), started with torchrun: collectives, tensor-parallel runs")
    g.add_argument("--nnodes", type=_count("--nnodes"), default=1, metavar="M",
                   help="nodes taking part (run the same command on each; default 1)")
    g.add_argument("--node-rank", type=_count("--node-rank", 0), default=0, metavar="R",
                   help="this node's rank, 0 to M-1 (node 0 writes the profile)")
    g.add_argument("--master-addr", metavar="A", help="address of node 0 (with --nnodes 2 or more)")
    g.add_argument("--master-port", type=_count("--master-port"), default=29500, metavar="P",
                   help="port of the rendezvous on node 0 (default 29500)")
    g.add_argument("--rdzv-timeout", type=positive_float("--rdzv-timeout", "a number of seconds"),
                   default=300.0, metavar="S", help="stop with an error if the processes have "
                   "not all joined after S seconds (default 300)")
    g.add_argument("--link", metavar="KIND", help="the interconnect between GPUs where NVML "
                   "cannot tell (e.g. nvlink, pcie, infiniband, ethernet); recorded in the profile")
    g.add_argument("--merge", nargs="+", metavar="PROFILE", help="merge two or more profiles of "
                   "one device class into one (--out, default merged.json), each source kept")
    g.add_argument("--grid", choices=("tiny", "quick", "default"), help=argparse.SUPPRESS)


def _count(flag: str, lowest: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lowest - 1
        if value < lowest or value > 65535:  # argparse shows an ArgumentTypeError's own words
            import argparse

            raise argparse.ArgumentTypeError(f"{flag} takes a whole number from {lowest} to "
                                             f"65535, got {text!r}.")
        return value
    return parse


def run(args: argparse.Namespace) -> int:
    from vramest.calibration.profile import load_profile
    from vramest.calibration.report import render_report

    if args.plot and not args.report:
        from vramest.errors import InputError

        raise InputError("--plot draws a profile's fit: give it with --report PROFILE.")
    if args.report:
        from vramest.commands.common import refuse_overwriting

        refuse_overwriting({"--plot": args.plot}, {"the --report profile": args.report})
        profile = load_profile(args.report)
        print("\n".join(render_report(profile)))
        if args.plot:
            for path in plot_fit(profile, args.plot):
                print(f"wrote {path}")
        return 0
    if args.out:  # before torch is even imported, let alone anything measured
        from vramest.files import check_writable

        check_writable(args.out, what="--out", make_folder=True)
    if args.merge:
        return merge(args.merge, args.out)
    from vramest.calibration.distributed import under_torchrun

    if args.nproc_per_node is not None and not under_torchrun():
        return launch_distributed(args)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        from vramest.errors import InputError

        raise InputError("calibrate needs torch and transformers: pip install "
                         "'vramest[calibrate]' (or `make install-dev`).") from None
    from vramest.calibration.device import select_backend
    from vramest.calibration.grid import default_grid, quick_grid
    from vramest.calibration.harness import RunOptions, run_calibration
    from vramest.calibration.models import default_cache_dir

    if under_torchrun():
        return run_rank(args)
    backend = select_backend(args.device)
    out = Path(args.out) if args.out else default_profile_path(backend.fingerprint())
    options = RunOptions(profile_path=out,
                         cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
                         grid=quick_grid if args.quick else default_grid,
                         grid_name="quick" if args.quick else "default",
                         max_minutes=args.max_minutes, fresh=args.fresh,
                         quantized=not args.no_quantized)
    run_calibration(backend, options)
    print("\n".join(render_report(load_profile(out))))
    return 0


# --- several processes -------------------------------------------------------------------------
GRID_SETTINGS = {  # grid → fit evaluations, timed repeats, timing budget (s), roof seconds
    "tiny": (60, 1, 0.0, 0.02), "quick": (200, 3, 1.0, 0.3), "default": (500, 3, 1.5, 0.6)}


def launch_distributed(args: argparse.Namespace) -> int:
    """This command again, on every rank, under torchrun."""
    from vramest.calibration.distributed_launch import Launch, launch

    forward = ["--device", args.device]
    if args.out:
        forward += ["--out", str(Path(args.out).resolve())]
    if args.cache_dir:
        forward += ["--cache-dir", str(Path(args.cache_dir).resolve())]
    if args.max_minutes is not None:
        forward += ["--max-minutes", repr(args.max_minutes)]
    forward += [flag for flag, on in (("--quick", args.quick), ("--fresh", args.fresh)) if on]
    forward += ["--grid", args.grid] if args.grid else []
    forward += ["--link", args.link] if args.link else []
    forward += ["--nproc-per-node", str(args.nproc_per_node)]
    return launch(Launch(args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr,
                         args.master_port, args.rdzv_timeout), forward)


def run_rank(args: argparse.Namespace) -> int:
    """One rank of a distributed calibration (started by torchrun)."""
    from vramest.calibration.distributed import DistOptions, run_worker
    from vramest.calibration.models import default_cache_dir

    grid = args.grid or ("quick" if args.quick else "default")
    evaluations, repeats, budget, roof = GRID_SETTINGS[grid]
    options = DistOptions(profile_path=Path(args.out) if args.out else None,
                          cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
                          grid_name=grid, max_minutes=args.max_minutes, fresh=args.fresh,
                          link=args.link, fit_evaluations=evaluations, timed_repeats=repeats,
                          timing_budget_s=budget, roof_seconds=roof)
    return run_worker(args.device, options)


def merge(paths: list[str], out: str | None) -> int:
    """Several machines' profiles of one device class → one, each source kept."""
    import json

    from vramest.calibration.distributed_fit import merge_profiles
    from vramest.calibration.profile import load_profile, validate_profile
    from vramest.calibration.report import render_report
    from vramest.calibration.store import write_json_atomic
    from vramest.commands.common import refuse_overwriting

    target = Path(out or "merged.json")
    refuse_overwriting({"--out": str(target)}, {f"--merge {p}": p for p in paths})
    loaded = [(Path(p).name, load_profile(p).raw) for p in paths]
    merged = merge_profiles(loaded)
    validate_profile(json.loads(json.dumps(merged)), target)
    write_json_atomic(target, merged)
    print("\n".join(render_report(load_profile(target))))
    print(f"wrote {target}")
    return 0


def default_profile_path(fingerprint: dict[str, object]) -> Path:
    import re

    from vramest.calibration.profile import user_profile_dir

    slug = re.sub(r"[^a-z0-9]+", "-", str(fingerprint["name"]).lower()).strip("-")
    return user_profile_dir() / f"{fingerprint['kind']}-{slug}.json"


def plot_fit(profile: object, out: str) -> list[Path]:
    """One predicted-vs-measured chart per metric: OUT-memory.png, OUT-decode.png, ..."""
    from vramest.calibration.report import calibration_points
    from vramest.render.plots.charts import calibration_figure

    target = Path(out)
    suffix = target.suffix.lower() or ".png"
    units = {"memory": "bytes", "decode": "tokens/s", "prefill": "tokens/s"}
    written = []
    for metric, (before, after) in calibration_points(profile).items():  # type: ignore[arg-type]
        if not before:
            continue
        figure = calibration_figure(before, after, title=f"Calibration: {metric}, predicted vs "
                                    "measured", unit=units[metric], before_label="shipped constants",
                                    after_label="fitted constants")
        path = target.with_name(f"{target.stem}-{metric}{suffix}")
        if suffix == ".svg":
            from vramest.render.html import write_atomically
            from vramest.render.plots.svg import figure_svg

            write_atomically(path, figure_svg(figure, standalone=True))
        else:
            from vramest.render.plots.matplotlib_render import save_figure

            save_figure(figure, path)
        written.append(path)
    return written
