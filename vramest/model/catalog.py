"""The built-in catalog of popular models (shipped data: vramest/data/models.json)."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from vramest.data import shipped_object, shipped_text
from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.model.shapes import ModelShape, shape_from_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


@frozen(eq=False)  # identity-hashed, so its parsed shape can be cached
class CatalogEntry:
    id: str
    aliases: tuple[str, ...]
    source: str
    config: dict[str, Any]
    published_params: int | None = None
    notes: str = ""
    # a quantized checkpoint's weight files as its repository lists them (bytes), and where
    published_file_bytes: int | None = None
    file_bytes_source: str = ""

    def shape(self) -> ModelShape:
        return _entry_shape(self)

    def _parse_shape(self) -> ModelShape:
        shape = shape_from_config(self.config, self.id, origin=f"catalog entry {self.id}")
        if "text_config" in self.config and self.published_params and \
                not _tower_counted(self.config):
            # A multimodal model: the published total minus the text model is its vision tower.
            missing = self.published_params - shape.param_count() + shape.extra_params
            if missing > 0:
                shape = replace(shape, extra_params=missing, notes=(
                    *shape.notes, "vision tower: published total minus the text model, 16 bit"))
        return shape

    @property
    def family(self) -> str:
        text = self.config.get("text_config")
        config = text if isinstance(text, dict) else self.config
        return str(config.get("model_type") or self.config.get("model_type") or "")


def _tower_counted(config: dict[str, Any]) -> bool:
    """Whether the vision tower is counted tensor by tensor (vision.vision_tower_params), so a
    published total (often rounded) need not stand in for it."""
    from vramest.model.vision import vision_tower_params

    text = config.get("text_config")
    hidden = text.get("hidden_size") if isinstance(text, dict) else None
    return isinstance(hidden, int) and vision_tower_params(config, hidden) is not None


@lru_cache(maxsize=256)
def _entry_shape(entry: CatalogEntry) -> ModelShape:
    return entry._parse_shape()


def _key(name: str) -> str:
    """Case, spaces and underscores do not matter: "Llama_3 8B" is llama-3-8b."""
    return "-".join(name.lower().replace("_", " ").split())


@frozen(eq=False)  # identity-hashed, so its index can be cached
class Catalog:
    entries: tuple[CatalogEntry, ...]

    def _index(self) -> dict[str, CatalogEntry]:
        index: dict[str, CatalogEntry] = {}
        for entry in self.entries:
            for name in (entry.id, entry.id.split("/")[-1], *entry.aliases):
                index.setdefault(_key(name), entry)
        return index

    def get(self, name: str) -> CatalogEntry | None:
        return _cached_index(self).get(_key(name))

    def find(self, name: str) -> CatalogEntry:
        entry = self.get(name)
        if entry is None:
            raise InputError(f"Unknown model {short(name)}; {self.suggest(name)}")
        return entry

    def suggest(self, name: str) -> str:
        from difflib import get_close_matches

        same_shape = self.closest_same_family(name)
        index = _cached_index(self)
        by_entry: dict[CatalogEntry, str] = {}  # the closest spelling of each entry
        for key in get_close_matches(_key(name), list(index), n=6, cutoff=0.5):
            by_entry.setdefault(index[key], key)
        hint = ""
        if same_shape is not None:
            entry, size = same_shape
            hint = (f"the closest catalog model of that family and size is {entry.id} "
                    f"({_count(size)}; --model {entry.id} uses its shape)")
            close = [key for e, key in by_entry.items() if e is not entry][:2]
            hint += f"; also near: {' or '.join(close)}. " if close else ". "
        elif by_entry:
            hint = f"did you mean {' or '.join(list(by_entry.values())[:3])}? "
        return (f"{hint}`vramest models` lists the catalog, and --model also takes a "
                "config.json, a model folder or a .gguf file.")

    def closest_same_family(self, name: str) -> tuple[CatalogEntry, int] | None:
        """The entry of the name's family (its text before the size, e.g. qwen2.5 in
        Qwen2.5-13B-Instruct) whose own name states the size nearest the name's, within a
        factor of SUGGEST_SIZE_FACTOR; failing that, the same in the family it is a variant of
        (qwen2.5 for qwen2.5-coder: Qwen2.5-Coder-32B has Qwen2.5-32B's shape), then in a
        version-less one (qwen for qwen2.5). Returns the entry and its parameter count."""
        asked = _family_and_size(name)
        if asked is None:
            return None
        family, size = asked
        best: tuple[float, int, CatalogEntry] | None = None
        for entry in self.entries:
            for candidate in (entry.id, *entry.aliases):
                found = _family_and_size(candidate)
                rank = None if found is None else _family_rank(found[0], family)
                if found is None or rank is None:
                    continue
                # label against label (Llama-4-Scout-17B-16E is 17B active, 109B in all)
                distance = abs(math.log(found[1] / size))
                if distance > math.log(SUGGEST_SIZE_FACTOR) + 1e-9:
                    continue
                params = entry.published_params or entry.shape().param_count()
                # among near sizes, the dated release of a dated name
                # (Qwen3-30B-A3B-Instruct-2507 for Qwen3-30B-A3B-Thinking-2507)
                shared = len(_dates(name) & _dates(entry.id))
                score = distance + 100.0 * rank - 0.01 * shared
                if best is None or score < best[0]:
                    best = (score, params, entry)
                break
        return (best[2], best[1]) if best else None


# "13b", "1.5B", "560m", "8x7b" (a mixture: experts x size) after the family's name
_SIZE = r"[-_ ](?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z])"  # compiled on first use


def _family_and_size(name: str) -> tuple[str, int] | None:
    """('qwen2.5', 13e9) for 'Qwen/Qwen2.5-13B-Instruct': the family is the text before the
    size without punctuation, the size in parameters."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    match = re.search(_SIZE, base)
    if match is None or match.start() == 0:
        return None
    experts, number, unit = match.groups()
    size = float(number) * (1e9 if unit == "b" else 1e6) * (int(experts) if experts else 1)
    family = re.sub(r"[^a-z0-9.]", "", base[:match.start()]).rstrip(".")
    if not family or size <= 0:
        return None
    return family, int(size)


def _dates(name: str) -> set[str]:
    """The date-style words of a name: 2507 in Qwen3-30B-A3B-Instruct-2507."""
    return set(re.findall(r"(?<![0-9.])[0-9]{4}(?![0-9])", name.rsplit("/", 1)[-1]))


# A suggested shape is at most this factor larger or smaller than the size the name states:
# past it the layers and width differ enough that the borrowed shape would mislead (a 7B for a
# 32B name), and no family suggestion is better than a wrong one.
SUGGEST_SIZE_FACTOR = 2.0


def _family_rank(found: str, asked: str) -> float | None:
    """0: the same family; 1: the found family is the versioned one the asked is a variant of
    (qwen2.5 for qwen2.5coder, qwen2.5vl); 2 and a little more the further apart: another
    version of the same line (qwen3.6 for qwen3.8, llama3.1 for llama3.4), whose shapes carry
    over more often than a first generation's; 3: one a version-less prefix of the other (qwen
    vs qwen2.5, llama vs llama3.1); None: unrelated."""
    if found == asked:
        return 0
    sibling = _versions_apart(found, asked)
    if sibling is not None:
        return 2 + min(sibling, 9) / 1000  # the size decides first, then the nearer version
    shorter, longer = sorted((found, asked), key=len)
    if not longer.startswith(shorter):
        return None
    if shorter == found and shorter[-1].isdigit() and longer[len(shorter):].isalpha():
        return 1
    return 3 if not shorter[-1].isdigit() and shorter.isalpha() else None


def _versions_apart(a: str, b: str) -> float | None:
    """How far apart two versions of one line are (qwen3.6 and qwen3.8: 0.2), or None where
    they are not both a version of the same name."""
    found = [re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", x) for x in (a, b)]
    if not (found[0] and found[1]) or found[0].group(1) != found[1].group(1):
        return None
    return abs(float(found[0].group(2)) - float(found[1].group(2)))


@lru_cache(maxsize=4)
def _cached_index(catalog: Catalog) -> dict[str, CatalogEntry]:
    return catalog._index()


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    import json

    return parse_catalog(json.loads(shipped_text("models.json")))


def parse_catalog(data: dict[str, Any]) -> Catalog:
    return Catalog(tuple(_entry(raw) for raw in data.get("models", [])))


def _entry(raw: dict[str, Any]) -> CatalogEntry:
    return CatalogEntry(
        id=raw["id"], aliases=tuple(raw.get("aliases", ())), source=raw.get("source", ""),
        config=raw["config"], published_params=raw.get("published_params"),
        notes=raw.get("notes", ""), published_file_bytes=raw.get("published_file_bytes"),
        file_bytes_source=raw.get("file_bytes_source", ""),
    )


@lru_cache(maxsize=64)
def shipped_entry(model_id: str) -> CatalogEntry | None:
    """One shipped entry by its exact id, decoded alone: a parameter count borrows from five
    entries, and decoding the whole catalog for them cost a tenth of the headline command.
    Each entry's object opens with its "id" key (a test holds models.json to that)."""
    raw = shipped_object("models.json", "id", model_id)
    return _entry(raw) if raw is not None else default_catalog().get(model_id)


# --- shapes from a parameter count -------------------------------------------------------
# The sizes a shape is interpolated between, per family: dense releases of one generation,
# so that layers, width and vocabulary change smoothly with size.
SCALING_SERIES: dict[str, tuple[str, ...]] = {
    "llama": ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.1-8B",
              "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-405B"),
    "qwen": ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-7B",
             "Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-32B", "Qwen/Qwen2.5-72B"),
    "gemma": ("google/gemma-2-2b", "google/gemma-2-9b", "google/gemma-2-27b"),
    "moe": ("Qwen/Qwen3-30B-A3B", "mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x22B-v0.1",
            "Qwen/Qwen3-235B-A22B", "deepseek-ai/DeepSeek-V3"),
}
FAMILIES = tuple(SCALING_SERIES)


@frozen
class BorrowedShape:
    shape: ModelShape
    borrowed_from: tuple[str, ...]
    explanation: str


def shape_for_params(params: int, family: str = "llama", active_params: int | None = None,
                     catalog: Catalog | None = None) -> BorrowedShape:
    """A shape of `params` parameters, interpolated between the family's catalog sizes."""
    if catalog is None:
        return _shape_for_params_default(params, family, active_params)
    return _borrow(params, family, active_params, catalog.get)


def _borrow(params: int, family: str, active_params: int | None,
            lookup: Callable[[str], CatalogEntry | None]) -> BorrowedShape:
    if active_params is not None:
        family = "moe"
    if family not in SCALING_SERIES:
        raise InputError(f"Unknown --family {short(family)}; accepted: {', '.join(FAMILIES)}.")
    entries = [e for e in (lookup(name) for name in SCALING_SERIES[family]) if e is not None]
    if not entries:
        raise InputError(f"The catalog has no models of family {short(family)} to borrow a shape from.")
    if family == "moe":
        return _borrow_moe(params, active_params,
                           sorted(((e.shape().param_count(), e) for e in entries),
                                  key=lambda pair: pair[0]))
    # The series ascend (a test holds them to it), so the split is found by bisection on the
    # published counts, which parses no config, and confirmed on the two neighbours' own
    # counts, which the shape is made from anyway (each parse is 0.7M instructions of a start);
    # where a published count misleads, the bisection runs on the parsed counts.
    def count(entry: CatalogEntry) -> int:
        return entry.shape().param_count()

    split = _first_above(entries, params, key=lambda e: e.published_params or 0)
    if not ((split == 0 or count(entries[split - 1]) <= params)
            and (split == len(entries) or count(entries[split]) > params)):
        split = _first_above(entries, params, key=count)
    below = [(count(e), e) for e in entries[:split][-1:]]
    above = [(count(e), e) for e in entries[split:][:1]]
    if below and above:
        (p_lo, e_lo), (p_hi, e_hi) = below[-1], above[0]
        t = (math.log(params) - math.log(p_lo)) / (math.log(p_hi) - math.log(p_lo))
        base = e_lo.shape() if t < 0.5 else e_hi.shape()
        lo, hi = e_lo.shape(), e_hi.shape()
        layers = round(_geo(lo.num_layers, hi.num_layers, t))
        hidden = _round_to(_geo(lo.hidden_size, hi.hidden_size, t), 128)
        kv_heads = min((lo.num_kv_heads, hi.num_kv_heads), key=lambda k: abs(k - 8))
        borrowed: tuple[str, ...] = (e_lo.id, e_hi.id)
        how = f"interpolated between {e_lo.id} and {e_hi.id}"
    else:
        p_ref, entry = (below[-1] if below else above[0])
        base = entry.shape()
        # Larger: width and depth grow alike. Smaller: the width shrinks faster, so the
        # embedding table does not outgrow the whole model.
        factor = (params / p_ref) ** (1 / 3 if below else 1 / 2)
        layers = max(1, round(base.num_layers * (params / p_ref) ** (1 / 3)))
        hidden = max(64, _round_to(base.hidden_size * factor, 64))
        kv_heads = base.num_kv_heads
        borrowed = (entry.id,)
        how = f"scaled from {entry.id}"
    # Whole groups of query heads per KV head, so grouped-query attention keeps its KV width.
    head_dim = base.head_dim
    group = head_dim * kv_heads
    hidden = max(group, _round_to(hidden, group))
    heads = hidden // head_dim
    shape = replace(base, name=f"{_count(params)} ({base.family}-shaped)", num_layers=layers,
                    hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads,
                    layer_kinds=(), moe_layers=())
    shape = _fit_intermediate(shape, params)
    return BorrowedShape(shape, borrowed,
                         f"shape {how}; intermediate size solved so the total is {_count(params)}")


def _first_above(entries: list[CatalogEntry], params: int,
                 key: Callable[[CatalogEntry], int]) -> int:
    """bisect.bisect_right by hand: the _bisect extension is a shared library, and loading
    it was a tenth of a millisecond of every start."""
    lo, hi = 0, len(entries)
    while lo < hi:
        mid = (lo + hi) // 2
        if key(entries[mid]) > params:
            hi = mid
        else:
            lo = mid + 1
    return lo


@lru_cache(maxsize=1024)
def _shape_for_params_default(params: int, family: str, active_params: int | None) -> BorrowedShape:
    """The same shape for the same count: searches and sweeps ask again and again."""
    return _borrow(params, family, active_params, shipped_entry)


def _borrow_moe(params: int, active: int | None,
                series: list[tuple[int, CatalogEntry]]) -> BorrowedShape:
    def distance(pair: tuple[int, CatalogEntry]) -> float:
        total, entry = pair
        d = abs(math.log(total / params))
        if active:
            d += abs(math.log(entry.shape().active_param_count() / active))
        return d

    _, entry = min(series, key=distance)
    base = entry.shape()
    shape = replace(base, name=f"{_count(params)} MoE ({base.family}-shaped)")
    fixed = shape.param_count() - _expert_params(shape)
    per_unit = _expert_params(shape) / max(1, shape.moe_intermediate_size)
    inter = max(1, round((params - fixed) / per_unit)) if params > fixed else 1
    shape = replace(shape, moe_intermediate_size=inter)
    return BorrowedShape(shape, (entry.id,),
                         f"MoE shape borrowed from {entry.id}; expert width solved so the total "
                         f"is {_count(params)}")


def _expert_params(shape: ModelShape) -> int:
    return sum(times * t.elements for t, times in shape.counted_tensors()
               if t.role in ("expert_gate", "expert_up", "expert_down"))


def _fit_intermediate(shape: ModelShape, params: int) -> ModelShape:
    # the count is linear in the MLP width: the narrowest width that fits is read off the line
    while True:
        without = replace(shape, intermediate_size=0).param_count()
        per_unit = replace(shape, intermediate_size=1).param_count() - without
        if shape.num_layers <= 1 or without + 64 * per_unit <= params:
            break
        shape = replace(shape, num_layers=shape.num_layers - 1)
    step = 256 if params > 10**9 else 64
    inter = max(step, _round_to((params - without) / max(per_unit, 1), step))
    return replace(shape, intermediate_size=inter)


def _geo(a: float, b: float, t: float) -> float:
    return math.exp(math.log(a) + t * (math.log(b) - math.log(a)))


def _round_to(x: float, step: int) -> int:
    return max(step, round(x / step) * step)


def _count(n: int) -> str:
    from vramest.units import format_count

    return format_count(n)
