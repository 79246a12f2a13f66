"""One module per subcommand, each with `add_parser(subparsers)` and `run(args) -> int`.

Modules are imported only when their command runs (or for --help), so a command's heavy
imports never slow the others down.
"""

from __future__ import annotations

# name → (module, one-line help). Estimating is the default command.
COMMANDS: dict[str, tuple[str, str]] = {
    "estimate": ("vramest.commands.estimate", "memory, fit and speed of one model (the default)"),
    "models": ("vramest.commands.models", "list the built-in model catalog"),
    "inspect": ("vramest.commands.inspect", "read a model folder, safetensors or GGUF file"),
    "train": ("vramest.commands.train", "training / fine-tuning memory per GPU, fit and speed"),
    "gpus": ("vramest.commands.gpus", "list the hardware database"),
    "hw": ("vramest.commands.hw", "show this machine's GPUs, CPU and RAM"),
    "check": ("vramest.commands.check", "CI capacity checks: fit, headroom and speed of deployments"),
    "trace": ("vramest.commands.trace", "measure a model's peak memory on fake tensors"),
    "plot": ("vramest.commands.plot", "charts: memory vs context or batch, speed vs batch"),
    "report": ("vramest.commands.report", "a self-contained HTML report of one estimate"),
    "tiers": ("vramest.commands.tiers", "LLM size tiers: the guide's hardware claims beside ours"),
    "recommend": ("vramest.commands.recommend", "the tier and ranked hardware for a need"),
    "cost": ("vramest.commands.cost", "local cost per million tokens beside an API price"),
    "calibrate": ("vramest.commands.calibrate", "measure models here, fit the constants, write a profile"),
    "web": ("vramest.commands.web", "a local web page: pick a model, move the sliders, see the fit"),
    "serving": ("vramest.commands.serving", "TTFT, TPOT and tokens/s under load (a concurrency or rate)"),
    "plan": ("vramest.commands.plan", "the cheapest deployments that meet a TTFT and TPOT bound"),
}
