"""vramest calibrate: measure real models on this machine, fit the constants, write a profile."""

from __future__ import annotations

import argparse
from pathlib import Path


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
