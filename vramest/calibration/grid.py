"""The grid of measurements: which model, precision, prompt, batch and generated tokens.

Torch-free. The default grid covers every family at two or three sizes in fp32 and bf16 and
bitsandbytes formats where they run; `--quick` keeps the small sizes and one prompt shape.
"""

from __future__ import annotations

from vramest.frozen import TYPE_CHECKING, asdict, frozen

if TYPE_CHECKING:
    from typing import Any

FLOAT_DTYPES = ("fp32", "bf16", "fp16")
QUANT_DTYPES = ("int8", "nf4")


@frozen
class GridPoint:
    family: str
    size: str
    dtype: str  # fp32 / bf16 / fp16, or a bitsandbytes format: int8 / nf4
    prompt: int
    batch: int
    gen: int

    @property
    def key(self) -> str:
        return (f"{self.family}/{self.size}/{self.dtype}/p{self.prompt}/b{self.batch}/"
                f"g{self.gen}")

    @property
    def model_key(self) -> str:
        """Points sharing a model_key share one loaded model."""
        return f"{self.family}/{self.size}/{self.dtype}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> GridPoint:
        return GridPoint(str(data["family"]), str(data["size"]), str(data["dtype"]),
                         int(data["prompt"]), int(data["batch"]), int(data["gen"]))


# (family, size, dtypes, (prompt, batch) shapes): each row expands to one point per dtype × shape.
_SHAPES_FULL = ((32, 1), (256, 1), (64, 4))
_SHAPES_QUICK = ((48, 1), (128, 2))
_GEN_TOKENS = 12
_GEN_TOKENS_QUICK = 8


def default_grid(float_dtypes: tuple[str, ...], quant_dtypes: tuple[str, ...]) -> list[GridPoint]:
    """Every family at its small and medium size; a ~0.8B Llama in fp32; bitsandbytes formats
    on two families."""
    rows: list[tuple[str, str, tuple[str, ...], tuple[tuple[int, int], ...]]] = []
    for family in ("llama", "qwen2", "mistral", "gpt2", "phi3"):
        rows.append((family, "xs", float_dtypes, _SHAPES_FULL))
        rows.append((family, "s", float_dtypes, _SHAPES_FULL))
        rows.append((family, "m", float_dtypes, ((128, 1),)))
    rows.append(("mixtral", "xs", float_dtypes, _SHAPES_FULL))
    rows.append(("mixtral", "s", float_dtypes, ((128, 1), (64, 4))))
    rows.append(("llama", "xl", ("fp32",), ((64, 1),)))
    for family in ("llama", "qwen2"):
        rows.append((family, "s", quant_dtypes, ((64, 1),)))
    return _expand(rows, _GEN_TOKENS)


def quick_grid(float_dtypes: tuple[str, ...], quant_dtypes: tuple[str, ...]) -> list[GridPoint]:
    rows: list[tuple[str, str, tuple[str, ...], tuple[tuple[int, int], ...]]] = [
        (family, "xs", float_dtypes, _SHAPES_QUICK)
        for family in ("llama", "qwen2", "mistral", "mixtral", "gpt2", "phi3")]
    rows.append(("llama", "s", ("fp32",), ((64, 1),)))
    rows.append(("llama", "xs", quant_dtypes, ((48, 1),)))
    return _expand(rows, _GEN_TOKENS_QUICK)


def tiny_grid() -> list[GridPoint]:
    """Seconds: what the tests run end to end."""
    return [GridPoint("llama", "xs", "fp32", 16, 1, 4), GridPoint("llama", "xs", "fp32", 32, 2, 4),
            GridPoint("gpt2", "xs", "fp32", 16, 1, 4), GridPoint("qwen2", "xs", "fp32", 24, 1, 4)]


def _expand(rows: list[tuple[str, str, tuple[str, ...], tuple[tuple[int, int], ...]]],
            gen: int) -> list[GridPoint]:
    points = [GridPoint(family, size, dtype, prompt, batch, gen)
              for family, size, dtypes, shapes in rows for dtype in dtypes
              for prompt, batch in shapes]
    # one model loaded at a time, small models first so a bounded run covers every family
    order = {"xs": 0, "s": 1, "m": 2, "xl": 3}
    return sorted(dict.fromkeys(points), key=lambda p: (order.get(p.size, 9), p.model_key))


# --- training ----------------------------------------------------------------------------------
TRAIN_METHODS = ("full", "lora", "qlora")


@frozen
class TrainPoint:
    """One training step: forward with the loss, backward and AdamW (vramest.tracing.training)."""

    family: str
    size: str
    dtype: str  # fp32 / bf16 (qlora: the compute dtype over an NF4 base)
    method: str  # full / lora / qlora
    seq: int
    micro_batch: int
    checkpointing: bool

    @property
    def key(self) -> str:
        return (f"train/{self.family}/{self.size}/{self.dtype}/{self.method}/s{self.seq}/"
                f"b{self.micro_batch}/{'ckpt' if self.checkpointing else 'nockpt'}")

    @property
    def model_key(self) -> str:
        return self.key  # each step builds its own model

    def to_json(self) -> dict[str, Any]:
        return {"task": "train", **asdict(self)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> TrainPoint:
        return TrainPoint(str(data["family"]), str(data["size"]), str(data["dtype"]),
                          str(data["method"]), int(data["seq"]), int(data["micro_batch"]),
                          bool(data["checkpointing"]))


TRAIN_FAMILIES = ("llama", "qwen2", "mixtral")


def training_grid(quick: bool, qlora: bool) -> list[TrainPoint]:
    """Small models of three families, fp32 and bf16, full and LoRA (QLoRA in bf16 where
    bitsandbytes NF4 trains here), seq 128-512, micro-batch 1-2, checkpointing on and off.
    Quick: the xs sizes at seq 128 and one longer shape."""
    shapes = ((128, 1, False), (256, 2, False), (512, 1, True)) if quick else \
        ((128, 1, False), (256, 2, False), (512, 1, False), (256, 2, True), (512, 2, True))
    methods = ("full", "lora")
    points = [TrainPoint(family, "xs", dtype, method, seq, mb, ckpt)
              for family in TRAIN_FAMILIES for dtype in ("fp32", "bf16") for method in methods
              for seq, mb, ckpt in (shapes[:1] if quick and (dtype, method) != ("bf16", "lora")
                                    else shapes)]
    if qlora:
        points.extend(TrainPoint(family, "xs", "bf16", "qlora", seq, mb, ckpt)
                      for family in ("llama", "qwen2") for seq, mb, ckpt in shapes[:2 if quick else 3])
    if not quick:
        points.extend(TrainPoint(family, "s", dtype, method, 256, 1, ckpt)
                      for family in ("llama", "qwen2") for dtype in ("fp32", "bf16")
                      for method in methods for ckpt in (False, True))
    return list(dict.fromkeys(points))
