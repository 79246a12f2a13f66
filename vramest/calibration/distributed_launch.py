"""`vramest calibrate --nproc-per-node N [--nnodes M ...]`: start torchrun
(`python -m torch.distributed.run`) with `-m vramest calibrate` as its worker, pass rank 0's
progress through, and turn the ways a distributed run ends into one sentence each: the
rendezvous not completing in time (the run is stopped, never left hanging), a rank that died
(which one, how, and that the measurements taken are kept), a rank's own reason.

Torch-free: torchrun is started as a subprocess; its own log (tracebacks included) is kept in
a file that the sentence names.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vramest.calibration.distributed import ERROR, JSONL, READY
from vramest.errors import InputError
from vramest.frozen import TYPE_CHECKING, frozen

if TYPE_CHECKING:
    from typing import IO


@frozen
class Launch:
    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = 29500
    rdzv_timeout_s: float = 300.0

    def check(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise InputError("--nproc-per-node and --nnodes must be 1 or more.")
        if self.nproc_per_node * self.nnodes < 2:
            raise InputError("A distributed calibration needs two or more processes: "
                             "--nproc-per-node 2 or more, or --nnodes 2 or more.")
        if not 0 <= self.node_rank < self.nnodes:
            raise InputError(f"--node-rank must be from 0 to {self.nnodes - 1} (--nnodes "
                             f"{self.nnodes}), got {self.node_rank}.")
        if self.nnodes > 1 and not self.master_addr:
            raise InputError("--nnodes 2 or more needs --master-addr: the address of the node "
                             "with --node-rank 0, reachable from every node.")
        if not 1 <= self.master_port <= 65535:
            raise InputError(f"--master-port must be from 1 to 65535, got {self.master_port}.")

    def torchrun_args(self) -> list[str]:
        args = [sys.executable, "-m", "torch.distributed.run",
                f"--nproc-per-node={self.nproc_per_node}", "--max-restarts=0"]
        if self.nnodes == 1 and not self.master_addr:
            return [*args, "--standalone"]
        return [*args, f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}",
                f"--master-addr={self.master_addr or '127.0.0.1'}",
                f"--master-port={self.master_port}"]


def launch(spec: Launch, worker_args: list[str], out: IO[str] | None = None) -> int:
    """Run torchrun with `python -m vramest calibrate WORKER_ARGS` on each rank; 0 when it
    finished, else InputError (exit status 2) or a failed run's sentence on stderr (status 1)."""
    spec.check()
    stream = out or sys.stdout
    # a new file of our own (mkstemp: O_EXCL), never whatever a predictable name points at
    fd, name = tempfile.mkstemp(prefix="vramest-torchrun-", suffix=".log")
    log = Path(name)
    command = [*spec.torchrun_args(), "-m", "vramest", "calibrate", *worker_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(fd, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                env=env, start_new_session=True, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read, args=(proc.stdout, lines), daemon=True)
        reader.start()
        ready, errors, jsonl = False, [], None
        deadline = time.monotonic() + spec.rdzv_timeout_s
        try:
            while True:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    if not ready and time.monotonic() > deadline:
                        _stop(proc)
                        raise InputError(_rendezvous_sentence(spec, log)) from None
                    continue
                if line is None:
                    break
                text = line.rstrip("\n")
                if text == READY:
                    ready = True
                elif text.startswith(ERROR):
                    errors.append(text[len(ERROR):].strip())
                elif text.startswith(JSONL):
                    jsonl = text[len(JSONL):].strip()
                else:
                    stream.write(line)
                    stream.flush()
        except KeyboardInterrupt:
            _stop(proc)
            raise
        rc = proc.wait()
    if rc == 0:
        with contextlib.suppress(OSError):
            log.unlink()
        return 0
    input_errors = [e for e in errors if not e.startswith("rank ")]
    died = _died(log.read_text(encoding="utf-8", errors="replace"))
    if input_errors and (died is None or died.exitcode >= 0):  # a rank's own reason, no crash
        raise InputError(input_errors[0])
    print(f"vramest: {_failure_sentence(spec, died, errors, jsonl, log)}", file=sys.stderr)
    return 1


def _read(pipe: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    if pipe is not None:
        for line in pipe:
            lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen[str]) -> None:
    """End torchrun and its workers (the session this launcher started for them)."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _rendezvous_sentence(spec: Launch, log: Path) -> str:
    if spec.nnodes > 1:
        return (f"The {spec.nnodes} nodes did not all join the rendezvous at "
                f"{spec.master_addr}:{spec.master_port} within {spec.rdzv_timeout_s:g} s, so the run "
                f"was stopped: start the same command on every node, each with its own --node-rank "
                f"(0 to {spec.nnodes - 1}), and check that the address and port are reachable "
                f"(torchrun's log: {log}).")
    return (f"The {spec.nproc_per_node} local processes did not start their process group within "
            f"{spec.rdzv_timeout_s:g} s, so the run was stopped (torchrun's log: {log}).")


@frozen
class Death:
    rank: int
    exitcode: int


def _died(log_text: str) -> Death | None:
    """The first failure torchrun reports ("Root Cause"): which rank, with which exit code
    (negative: the signal that ended it)."""
    cause = log_text.split("Root Cause", 1)
    text = cause[1] if len(cause) > 1 else log_text
    rank = re.search(r"rank\s*:\s*(\d+)", text)
    code = re.search(r"exitcode\s*:\s*(-?\d+)", text)
    if rank is None or code is None:
        return None
    return Death(int(rank.group(1)), int(code.group(1)))


def _failure_sentence(spec: Launch, died: Death | None, errors: list[str], jsonl: str | None,
                      log: Path) -> str:
    world = spec.nproc_per_node * spec.nnodes
    kept = (f"every measurement taken before it is kept in {jsonl}" if jsonl else
            "no measurement had been taken yet")
    if died is not None and died.exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-died.exitcode).name}"
        except ValueError:
            how = f"killed by signal {-died.exitcode}"
        return (f"Rank {died.rank} of {world} died ({how}) during the calibration; {kept}. Run the "
                f"same command again to resume (torchrun's log: {log}).")
    if errors:
        return f"{errors[0]} (torchrun's log: {log})"
    if died is not None:
        return (f"Rank {died.rank} of {world} exited with status {died.exitcode} during the "
                f"calibration; {kept}. Run the same command again to resume (torchrun's log: {log}).")
    return (f"torchrun ended the calibration without saying why; {kept}. Its log is {log}; run the "
            "same command again to resume.")
