"""What this machine has: NVIDIA GPUs through NVML, else CPU cores and RAM.

The only module that talks to the NVIDIA driver; everything here degrades to a one-line note
when the library or the driver is missing.
"""

from __future__ import annotations

import os
import platform

from vramest.frozen import frozen


@frozen
class LocalGPU:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    driver: str


@frozen
class LocalHardware:
    gpus: tuple[LocalGPU, ...]
    cpu_cores: int
    ram_bytes: int | None
    free_ram_bytes: int | None
    note: str  # why no GPU was found, if none

    def to_json(self) -> dict[str, object]:
        return {"gpus": [g.__dict__ for g in self.gpus], "cpu_cores": self.cpu_cores,
                "cpu": platform.processor() or platform.machine(),
                "ram_bytes": self.ram_bytes, "free_ram_bytes": self.free_ram_bytes,
                "note": self.note}


def nvml_gpus() -> tuple[tuple[LocalGPU, ...], str]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return (), "NVML is not installed (pip install 'vramest[calibrate]' brings nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # the driver missing raises NVMLError subclasses
        return (), f"NVML found no NVIDIA driver ({exc.__class__.__name__})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(LocalGPU(index, name.decode() if isinstance(name, bytes) else str(name),
                                 int(memory.total), int(memory.free), driver))
        return tuple(gpus), "" if gpus else "NVML reports no GPUs"
    finally:
        pynvml.nvmlShutdown()


def _ram() -> tuple[int | None, int | None]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        try:
            pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
            free = os.sysconf("SC_AVPHYS_PAGES")
            return pages * size, free * size
        except (ValueError, OSError, AttributeError):
            return None, None


def detect() -> LocalHardware:
    gpus, note = nvml_gpus()
    total, free = _ram()
    return LocalHardware(gpus, os.cpu_count() or 1, total, free, note)
