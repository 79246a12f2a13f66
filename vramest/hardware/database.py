"""The hardware database (shipped data: vramest/data/gpus.json, extensible by a user file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from vramest.data import shipped_object, shipped_text
from vramest.errors import InputError, short
from vramest.frozen import TYPE_CHECKING, frozen, replace
from vramest.units import GIB

if TYPE_CHECKING:
    from typing import Any

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "fp4")
KINDS = ("gpu", "apple", "cpu", "npu")
# GPUs shown when no --gpu is given: the cards people most often rent or buy for inference.
COMMON_DEVICES = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090",
                  "NVIDIA L4", "NVIDIA A10", "NVIDIA L40S", "NVIDIA RTX 6000 Ada Generation",
                  "NVIDIA A100 SXM4 40GB", "NVIDIA A100 SXM4 80GB", "NVIDIA H100 SXM5 80GB",
                  "NVIDIA H200 SXM 141GB", "NVIDIA B200", "AMD Instinct MI300X",
                  "Apple M4 Max")


ECC_IN_BAND_SHARE = 1 / 16


@frozen
class Device:
    name: str
    aliases: tuple[str, ...]
    vendor: str
    kind: str
    device_class: str
    memory_bytes: int
    bandwidth_bytes_s: float | None  # None where no source states it
    dense_tflops: tuple[tuple[str, float], ...]  # datasheet dense figures, no sparsity
    source: str
    interconnect_bytes_s: float | None = None
    interconnect_name: str | None = None
    pcie_bytes_s: float | None = None
    tdp_w: float | None = None
    price_usd: float | None = None
    price_date: str | None = None
    price_source: str | None = None
    notes: str = ""
    # GDDR data-centre cards ship with ECC on, and their ECC is stored in-band: 1/16 of the
    # memory holds check bits (nvidia-smi totals: T4 15360 MiB of 16 GiB, L4 23034 MiB of
    # 24 GiB, A40 and L40S 46068 MiB of 48 GiB). HBM keeps ECC beside the data.
    ecc_in_band: bool = False
    # Unified memory (Jetson): what a CUDA process can allocate once firmware carve-outs and
    # the OS have taken theirs; the row's source says how it was found.
    addressable_override_bytes: int | None = None
    # Unified memory (DGX Spark): what the OS, its services and caches hold when an engine
    # starts. CUDA counts it as used, so the free memory an engine checks is below the total.
    os_in_use_bytes: int = 0
    # What CUDA reports as the total (torch.cuda.mem_get_info) where logs of this card give it:
    # HBM data-centre cards show more than the common share of their nominal size (H200 139.72
    # of 141 GiB, not 0.985 x 141 = 138.9); the row's cuda_total_source says where.
    cuda_total_bytes: int | None = None

    def reported_total_bytes(self, visible_fraction: float) -> int:
        """The total a CUDA process reads (torch.cuda.mem_get_info): the card's logged total,
        else its addressable memory less the driver's common share, or a unified chip's
        measured total."""
        if self.addressable_override_bytes is not None:
            return self.addressable_override_bytes
        if self.cuda_total_bytes is not None:
            return self.cuda_total_bytes
        return round(self.addressable_bytes * visible_fraction)

    @property
    def addressable_bytes(self) -> int:
        """What programs can allocate from: the nominal memory less in-band ECC (or, for
        unified memory, less what the firmware and the OS keep)."""
        if self.addressable_override_bytes is not None:
            return self.addressable_override_bytes
        return self.memory_bytes - (round(self.memory_bytes * ECC_IN_BAND_SHARE)
                                    if self.ecc_in_band else 0)

    def flops(self, precision: str) -> tuple[float | None, str]:
        """Dense FLOP/s for a precision and where the figure comes from."""
        table = dict(self.dense_tflops)
        if precision in table:
            return table[precision] * 1e12, f"{self.name} datasheet ({precision})"
        if precision == "bf16" and "fp16" in table:
            return table["fp16"] * 1e12, f"{self.name} datasheet (fp16 = bf16 rate)"
        if precision in ("fp16", "bf16") and "fp32" in table:
            if self.vendor == "nvidia" and self.kind == "gpu":
                # GeForce/workstation tensor cores with fp32 accumulate run at twice the
                # non-tensor fp32 rate (Ampere/Ada/Blackwell whitepapers, e.g. RTX 4090:
                # 82.6 fp32, 165.2 fp16-tensor with fp32 accumulate).
                return table["fp32"] * 2e12, f"{self.name}: 2 × fp32 (tensor cores, fp32 acc.)"
            return table["fp32"] * 1e12, f"{self.name}: fp32 rate (no 16-bit figure published)"
        if precision in ("fp8", "int8", "fp4"):
            return self.flops("fp16")
        return None, f"{self.name}: no {precision} figure published"

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "aliases": list(self.aliases), "vendor": self.vendor,
            "kind": self.kind, "class": self.device_class, "memory_bytes": self.memory_bytes,
            "memory_bandwidth_gbs": self.bandwidth_bytes_s / 1e9 if self.bandwidth_bytes_s
            else None,
            "dense_tflops": dict(self.dense_tflops),
            "interconnect_gbs": self.interconnect_bytes_s / 1e9 if self.interconnect_bytes_s
            else None,
            "addressable_bytes": self.addressable_bytes, "ecc_in_band": self.ecc_in_band,
            "os_in_use_bytes": self.os_in_use_bytes,
            "tdp_w": self.tdp_w, "price_usd": self.price_usd, "price_date": self.price_date,
            "source": self.source,
        }


MAX_COUNT = 4096  # GPUs one --gpu may count, as --num-gpus allows
# Apple's machines, longest first, as users name a Mac before its chip
_MAC_PRODUCTS = (("macbook", "pro"), ("macbook", "air"), ("mac", "mini"), ("mac", "studio"),
                 ("mac", "pro"), ("macbook",), ("imac",), ("mac",))


def counted(name: str) -> tuple[int, str] | None:
    """(count, the rest) of "2x RTX 4090", "8xH100", "4 × A100" or "2*3090"; None where the
    name does not start with a whole count and a times sign."""
    text = name.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    rest = text[digits:].lstrip()
    if not 0 < digits <= 4 or rest[:1] not in ("x", "X", "×", "*") or \
            not 0 < int(text[:digits]) <= MAX_COUNT:
        return None
    rest = rest[1:].strip()
    return (int(text[:digits]), rest) if rest else None


def _trailing_size(name: str) -> tuple[str, int] | None:
    """(the name before it, the GB) of a name ending in a memory size: "RTX 4090 24GB",
    "A6000 48 GB", "M2 Max 32GB", "H100 80G", "RTX 4090 24GiB"."""
    words = name.lower().replace("-", " ").split()
    if len(words) > 2 and words[-1] in ("gb", "gib", "g"):
        words = [*words[:-2], words[-2] + words[-1]]
    size = words[-1] if words else ""
    for unit in ("gib", "gb", "g"):
        size = size.removesuffix(unit) if size.endswith(unit) else size
    if len(words) < 2 or not size.isdigit():
        return None
    return " ".join(words[:-1]), int(size)


def agreeing_count(num_gpus: int, count: int, gpu: str) -> int:
    """The GPUs in all when --gpu counts them ("2x RTX 4090"): --num-gpus unset (1) or equal."""
    if count == 1 or num_gpus in (1, count):
        return max(num_gpus, count)
    raise InputError(f"--gpu {short(gpu)} counts {count} GPUs and --num-gpus says {num_gpus}; "
                     "give one, or make them agree.")


def _norm(name: str) -> str:
    """Lower case without spaces, '-' or '_' ("RTX-4090 24 GB" → "rtx409024gb")."""
    return "".join(name.lower().replace("-", "").replace("_", "").split())


_VENDOR_WORDS = ("nvidia", "geforce", "amd", "instinct", "apple", "huawei", "tesla", "cpu")


def _short(name: str) -> str:
    key = _norm(name)
    for word in _VENDOR_WORDS:
        key = key.replace(word, "")
    return key


@frozen(eq=False)  # identity-hashed, so its index can be cached
class HardwareDB:
    devices: tuple[Device, ...]

    def find(self, name: str) -> Device:
        device = self._lookup(name) or self._unified_config(name) or \
            self._with_its_size(name) or self._in_a_mac(name) or self._one_gpu_instance(name)
        if device is None:
            raise InputError(f"Unknown GPU {short(name)}; {self.suggest(name)}")
        return device

    def _lookup(self, name: str) -> Device | None:
        return _index(self).get(_norm(name)) or _index(self).get(_short(name)) or \
            _words_index(self).get(_words(name))

    def _with_its_size(self, name: str) -> Device | None:
        """A name with its memory size after it, as users write it ("RTX 4090 24GB", "RTX
        A6000 48 GB"): the device, when that is the size it has. A larger size on a GeForce or
        workstation card is a board rebuilt with larger memory chips, sold and run as such
        (the RTX 2080 Ti 22GB of vLLM #2140, 48 GB RTX 4090s): the card with that memory, its
        name saying so. A smaller size, or another size of an HBM part, stays unknown."""
        sized = _trailing_size(name)
        if sized is None:
            return None
        device = self._lookup(sized[0])
        if device is None or round(device.memory_gib) == sized[1]:
            return device
        if device.device_class in ("consumer", "workstation") and \
                device.memory_gib < sized[1] <= 4 * device.memory_gib:
            return replace(device, name=f"{device.name} rebuilt with {sized[1]}GB",
                           memory_bytes=sized[1] * GIB, cuda_total_bytes=None,
                           notes=f"{device.notes} Rebuilt board: {sized[1]} GB as given, the "
                           "rest of the card's datasheet row.".strip())
        return None

    def _one_gpu_instance(self, name: str) -> Device | None:
        """A cloud instance type of one GPU is that GPU; one of several is said so where a
        single GPU is asked for (find_counted reads their count)."""
        from vramest.hardware.instances import instance

        machine = instance(name)
        if machine is None:
            return None
        if machine[1] > 1:
            raise InputError(f"{name.strip()} has {machine[1]} {machine[0]} GPUs; here give one: "
                             f"--gpu \"{machine[0]}\" (with --num-gpus {machine[1]} where the "
                             "command takes it).")
        return self.find(machine[0])

    def _in_a_mac(self, name: str) -> Device | None:
        """A Mac named with its chip ("MacBook Pro M1 16GB", "Mac Studio M2 Ultra"): the
        chip's row. The product's words go first, so "MacBook Pro M1" is the M1, not the M1
        Pro; a name that leaves no Apple chip is not a Mac."""
        words = name.lower().replace("-", " ").split()
        for product in _MAC_PRODUCTS:
            if words[:len(product)] == list(product) and len(words) > len(product):
                rest = " ".join(words[len(product):])
                device = self._lookup(rest) or self._unified_config(rest)
                return device if device is not None and device.vendor.lower() == "apple" \
                    else None
        return None

    def find_counted(self, name: str) -> tuple[Device, int]:
        """A GPU name with a count before it, as users write a machine ("2x RTX 4090",
        "8xH100", "4 × A100 80GB"): the device and the count (1 where none is written). A
        name the database knows whole is never read as a count."""
        try:
            return self.find(name), 1
        except InputError:
            from vramest.hardware.instances import instance

            machine = instance(name)
            if machine is not None:  # a cloud instance type: its GPUs
                return self.find(machine[0]), machine[1]
            split = counted(name)
            if split is None:
                raise
            try:
                return self.find(split[1]), split[0]
            except InputError:
                raise InputError(f"Unknown GPU {short(split[1])} in --gpu "
                                 f"{short(name)}; {self.suggest(split[1])}") from None

    def _unified_config(self, name: str) -> Device | None:
        """A unified-memory chip with its memory size ("M2 Max 32GB"): the chip's row (listed
        at its largest configuration) with that memory and Metal's working set of it."""
        sized = _trailing_size(name)
        if sized is None:
            return None
        chip, gib = _words_index(self).get(_words(sized[0])), sized[1]
        if chip is None or chip.vendor.lower() != "apple" or not 0 < gib * GIB <= chip.memory_bytes:
            return None
        return replace(chip, name=f"{chip.name} {gib}GB", memory_bytes=gib * GIB,
                       addressable_override_bytes=metal_working_set(gib * GIB))

    def find_list(self, text: str) -> tuple[Device, ...]:
        """GPUs of one machine named together: "RTX 5090 D,RTX 5070 Ti", "3090 + 3060" or
        "2x 3090 + 3060"."""
        names = [part.strip() for part in text.replace("+", ",").split(",")]
        if any(not name for name in names):
            raise InputError(f"--gpu {short(text)} has an empty name; give GPUs separated by "
                             "commas, such as \"RTX 5090 D,RTX 5070 Ti\".")
        found = [self.find_counted(name) for name in names] if len(names) <= 64 else []
        if len(names) > 64 or sum(count for _, count in found) > 64:
            raise InputError("--gpu names more than 64 GPUs; give at most 64.")
        return tuple(device for device, count in found for _ in range(count))

    def suggest(self, name: str) -> str:
        from difflib import get_close_matches

        close = get_close_matches(_norm(name), list(_index(self)), n=3, cutoff=0.5)
        names = [_index(self)[c].name for c in close]
        hint = f"did you mean {' or '.join(dict.fromkeys(names))}? " if names else ""
        return f"{hint}`vramest gpus` lists the known devices; --hardware-file adds your own."

    def common(self) -> list[Device]:
        out = []
        for name in COMMON_DEVICES:
            try:
                out.append(self.find(name))
            except InputError:
                continue
        return out

    def merged(self, extra: HardwareDB) -> HardwareDB:
        by_name = {d.name.lower(): d for d in self.devices}
        for device in extra.devices:
            known = by_name.get(device.name.lower())
            if known is not None and not device.aliases:  # an override keeps the short names
                device = replace(device, aliases=known.aliases)
            by_name[device.name.lower()] = device
        return HardwareDB(tuple(by_name.values()))


@lru_cache(maxsize=8)
def _index(db: HardwareDB) -> dict[str, Device]:
    index: dict[str, Device] = {}
    for device in db.devices:
        for name in (device.name, *device.aliases):
            index.setdefault(_norm(name), device)
    for device in db.devices:  # "rtx 4090", "h100 sxm5 80gb" without the vendor words
        index.setdefault(_short(device.name), device)
    return index


# words a name may carry that do not tell two devices apart: nvidia-smi's "NVIDIA H100 80GB
# HBM3" is the H100 SXM5 (the PCIe card says PCIe), "NVIDIA A100 80GB PCIe" the A100 PCIe 80GB
_MEMORY_WORDS = frozenset({"hbm2", "hbm2e", "hbm3", "hbm3e", "gddr6", "gddr6x", "gddr7"})


def _words(name: str) -> frozenset[str]:
    """A name as a set of words, in any order, without vendor and memory-type words."""
    words = name.lower().replace("-", " ").replace("_", " ").split()
    return frozenset(w for w in words if w not in _VENDOR_WORDS and w not in _MEMORY_WORDS)


@lru_cache(maxsize=8)
def _words_index(db: HardwareDB) -> dict[frozenset[str], Device]:
    index: dict[frozenset[str], Device] = {}
    for device in db.devices:
        for name in (device.name, *device.aliases):
            index.setdefault(_words(name), device)
    return index


def parse_devices(data: Any, origin: str) -> HardwareDB:
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise InputError(f"{origin} must be a JSON object with a \"devices\" list.")
    devices = [_parse_device(raw, origin, i) for i, raw in enumerate(data["devices"])]
    return HardwareDB(tuple(devices))


def _number(raw: dict[str, Any], key: str, where: str, *, required: bool = False) -> float | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise InputError(f"{where} has no {key}; every device needs one.")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e9:
        raise InputError(f"{where}: {key} must be a positive number (at most 1e9), got "
                         f"{short(value)}.")
    return float(value)


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{where}: {key} must be true or false, got {short(value)}.")
    return value


def _parse_device(raw: Any, origin: str, i: int) -> Device:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InputError(f"{origin}: device {i} must be an object with a \"name\".")
    where = f"{origin}: device {raw['name']!r}"
    memory = _number(raw, "memory_gib", where, required=True)
    bandwidth = _number(raw, "memory_bandwidth_gbs", where)
    tflops_raw = raw.get("dense_tflops") or {}
    if not isinstance(tflops_raw, dict):
        raise InputError(f"{where}: dense_tflops must be an object of precision → TFLOP/s.")
    tflops = []
    for precision in tflops_raw:
        if precision not in PRECISIONS:
            raise InputError(f"{where}: unknown precision {short(precision)} in dense_tflops; "
                             f"accepted: {', '.join(PRECISIONS)}.")
        number = _number(tflops_raw, precision, where)
        if number is not None:
            tflops.append((precision, number))
    kind = raw.get("kind", "gpu")
    if kind not in KINDS:
        raise InputError(f"{where}: kind must be one of {', '.join(KINDS)}.")
    link = raw.get("interconnect") or {}
    price = raw.get("price") or {}
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise InputError(f"{where}: aliases must be a list of strings.")
    return Device(
        name=raw["name"], aliases=tuple(aliases), vendor=str(raw.get("vendor", "")),
        kind=kind, device_class=str(raw.get("class", kind)),
        memory_bytes=int(memory * GIB),  # type: ignore[operator]
        bandwidth_bytes_s=bandwidth * 1e9 if bandwidth else None,
        dense_tflops=tuple(tflops), source=str(raw.get("source", "")),
        interconnect_bytes_s=(_number(link, "gbs", where) or 0) * 1e9 or None
        if isinstance(link, dict) else None,
        interconnect_name=link.get("name") if isinstance(link, dict) else None,
        pcie_bytes_s=(_number(raw, "pcie_gbs", where) or 0) * 1e9 or None,
        tdp_w=_number(raw, "tdp_w", where),
        price_usd=_number(price, "usd", where) if isinstance(price, dict) else None,
        price_date=price.get("date") if isinstance(price, dict) else None,
        price_source=price.get("source") if isinstance(price, dict) else None,
        notes=str(raw.get("notes", "")),
        ecc_in_band=_flag(raw, "ecc_in_band", where),
        addressable_override_bytes=_addressable(raw, memory, where),  # type: ignore[arg-type]
        os_in_use_bytes=int((_number(raw, "os_in_use_gib", where) or 0) * GIB),
        cuda_total_bytes=_cuda_total(raw, memory, where),  # type: ignore[arg-type]
    )


def _cuda_total(raw: dict[str, Any], memory: float, where: str) -> int | None:
    value = _number(raw, "cuda_total_gib", where)
    if value is None:
        return None
    if value > memory:
        raise InputError(f"{where}: cuda_total_gib ({value:g}) cannot exceed memory_gib "
                         f"({memory:g}).")
    return round(value * GIB)


# Metal's recommendedMaxWorkingSetSize, what one process may keep on the GPU of a Mac unless
# `sysctl iogpu.wired_limit_mb` raises it: two thirds of the unified memory up to 32 GB, three
# quarters above, as llama.cpp logs it on macOS 13-15: 10922.67 MB of 16 GB
# (abetlen/llama-cpp-python#687), 21845.34 MB of 32 GB (ollama/ollama#434), 49152 MiB of 64 GB
# (ggml-org/llama.cpp#1870), 73728 MB of 96 GB (ggml-org/llama.cpp#3213). macOS 26 reports
# more on 128 GB (107.52 GiB, antirez/ds4#893); --hardware-file with addressable_gib for that.
METAL_SMALL_SHARE, METAL_LARGE_SHARE, METAL_SMALL_UP_TO = 2 / 3, 3 / 4, 32 * GIB


def metal_working_set(memory_bytes: int) -> int:
    share = METAL_SMALL_SHARE if memory_bytes <= METAL_SMALL_UP_TO else METAL_LARGE_SHARE
    return round(memory_bytes * share)


def _addressable(raw: dict[str, Any], memory: float, where: str) -> int | None:
    value = _number(raw, "addressable_gib", where)
    if value is None:
        if str(raw.get("vendor", "")).lower() == "apple":
            return metal_working_set(int(memory * GIB))
        return None
    if value > memory:
        raise InputError(f"{where}: addressable_gib ({value:g}) cannot exceed memory_gib "
                         f"({memory:g}).")
    return int(value * GIB)


SHIPPED = "vramest/data/gpus.json"


@lru_cache(maxsize=1)
def default_hardware() -> HardwareDB:
    import json

    return parse_devices(json.loads(shipped_text("gpus.json")), SHIPPED)


@lru_cache(maxsize=64)
def shipped_device(name: str) -> Device:
    """One shipped device by its exact name, decoded alone: the GPU table shows 14 of the
    database's rows, and decoding all of them cost a tenth of the headline command. Each
    device's object opens with its "name" key (a test holds gpus.json to that)."""
    raw = shipped_object("gpus.json", "name", name)
    if raw is not None:
        return _parse_device(raw, SHIPPED, 0)
    return default_hardware().find(name)


def common_devices(extra_file: str | Path | None = None) -> list[Device]:
    """The GPU table's devices: COMMON_DEVICES, as a --hardware-file may override them."""
    if extra_file is None:
        return [shipped_device(name) for name in COMMON_DEVICES]
    return load_hardware(extra_file).common()


def load_hardware(extra_file: str | Path | None = None) -> HardwareDB:
    """The shipped database, with a user's --hardware-file added or overriding by name."""
    db = default_hardware()
    if extra_file is None:
        return db
    from vramest.files import read_json

    data = read_json(extra_file, what="--hardware-file")
    return db.merged(parse_devices(data, str(extra_file)))


def device_from_local(name: str, memory_bytes: int, bandwidth_bytes_s: float | None,
                      db: HardwareDB) -> Device:
    """A detected device: the database entry of that name with the measured memory, if known."""
    try:
        known = db.find(name)
        return replace(known, memory_bytes=memory_bytes, ecc_in_band=False,  # measured as seen
                       addressable_override_bytes=None, cuda_total_bytes=None)
    except InputError:
        return Device(name=name, aliases=(), vendor="", kind="gpu", device_class="unknown",
                      memory_bytes=memory_bytes, bandwidth_bytes_s=bandwidth_bytes_s,
                      dense_tflops=(), source="detected on this machine")
