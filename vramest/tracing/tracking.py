"""Count the bytes every live tensor holds, as torch runs: the peak, the operator at the peak,
and what the peak was made of.

`LiveBytesTracker` is a TorchDispatchMode: every aten operator's outputs pass through it, and
each storage it has not seen yet is counted once (views share their base's storage) until a
weak reference on the storage says it was freed. Fake tensors (FakeTensorMode) have storages
with sizes but no data, so the same tracker measures a fake run and a real one identically:

    tracker = LiveBytesTracker()
    tracker.label(model.parameters(), PARAMS)          # count (and name) what exists already
    tracker.watch(KV_CACHE, lambda: cache_tensors(cache))
    with tracker:
        model(input_ids)
    tracker.peak.bytes, tracker.peak.op, tracker.peak.by_label

Only storages created while the tracker is active, or handed to `label`/`count`, are counted.
Memory an operator uses internally and frees before it returns (kernel workspaces) is not
visible to it, on fake and real tensors alike. Needs torch; import this module only where
torch is installed.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vramest.frozen import TYPE_CHECKING, field, frozen

if TYPE_CHECKING:
    from typing import Any

PARAMS = "params"
KV_CACHE = "kv_cache"
ACTIVATIONS = "activations"  # everything not labelled or watched: the transient tensors


@frozen
class Peak:
    """The most bytes live at once, the operator whose outputs made it, and its parts."""

    bytes: int = 0
    op: str = ""
    by_label: dict[str, int] = field(default_factory=dict)

    def part(self, label: str) -> int:
        return self.by_label.get(label, 0)


@dataclasses.dataclass
class _Storage:
    nbytes: int
    label: str
    ref: weakref.ref[Any]


class LiveBytesTracker(TorchDispatchMode):
    """Tracks live tensor storage bytes through torch's dispatcher (fake or real tensors).

    `label(tensors, name)` counts existing tensors under a name (parameters: `PARAMS`);
    `watch(name, tensors_fn)` names the storages `tensors_fn()` returns whenever a new peak is
    recorded (the KV cache, whose tensors are created during the run); everything else counts
    as `ACTIVATIONS`. `reset_peak()` starts a new phase from what is live now.
    """

    def __init__(self) -> None:
        super().__init__()
        self._storages: dict[int, _Storage] = {}
        self._watchers: dict[str, Callable[[], Iterable[torch.Tensor]]] = {}
        self.live_bytes = 0
        self.peak = Peak()
        self.ops_seen: set[str] = set()

    # --- what is counted ---------------------------------------------------------------
    def label(self, tensors: Iterable[torch.Tensor], name: str) -> None:
        """Count these tensors' storages (if not yet counted) and name them `name`."""
        for tensor in tensors:
            key = self._count(tensor, name)
            if key is not None:
                self._storages[key].label = name
        self._update_peak("label")

    def count(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count tensors made before the tracker was entered (inputs) as activations."""
        for tensor in tensors:
            self._count(tensor, ACTIVATIONS)
        self._update_peak("count")

    def watch(self, name: str, tensors_fn: Callable[[], Iterable[torch.Tensor]]) -> None:
        """At each new peak, the storages of `tensors_fn()` are reported under `name`."""
        self._watchers[name] = tensors_fn

    def reset_peak(self) -> None:
        """Forget the peak so far: the next one is measured from what is live now."""
        self.peak = Peak()
        self._update_peak("(start)")

    def bytes_by_label(self) -> dict[str, int]:
        """What is live now, by label (watched storages under their watcher's name)."""
        totals = {PARAMS: 0, KV_CACHE: 0, ACTIVATIONS: 0}
        watched = self._watched_keys()
        for key, storage in self._storages.items():
            label = watched.get(key, storage.label) if storage.label == ACTIVATIONS else \
                storage.label
            totals[label] = totals.get(label, 0) + storage.nbytes
        return totals

    # --- dispatcher hook ---------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.__name__
        self.ops_seen.add(name)
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._count(leaf, ACTIVATIONS)
        self._update_peak(name)
        return out

    # --- internals ---------------------------------------------------------------------
    def _count(self, tensor: torch.Tensor, name: str) -> int | None:
        try:
            storage = tensor.untyped_storage()
        except (NotImplementedError, RuntimeError):  # tensors without storage (sparse, nested)
            return None
        key = id(storage)  # torch keeps one Python object per live storage
        nbytes = storage.nbytes()
        known = self._storages.get(key)
        if known is not None:
            if known.nbytes != nbytes:  # resized in place (resize_, out= ops)
                self.live_bytes += nbytes - known.nbytes
                known.nbytes = nbytes
            return key
        def release(_ref: object, key: int = key) -> None:
            self._release(key)

        ref = weakref.ref(storage, release)
        self._storages[key] = _Storage(nbytes, name, ref)
        self.live_bytes += nbytes
        return key

    def _release(self, key: int) -> None:
        storage = self._storages.pop(key, None)
        if storage is not None:
            self.live_bytes -= storage.nbytes

    def _watched_keys(self) -> dict[int, str]:
        keys: dict[int, str] = {}
        for name, tensors_fn in self._watchers.items():
            for tensor in tensors_fn():
                keys[id(tensor.untyped_storage())] = name
        return keys

    def _update_peak(self, op: str) -> None:
        if self.live_bytes > self.peak.bytes or not self.peak.op:
            self.peak = Peak(self.live_bytes, op, self.bytes_by_label())
