"""Child processes that never outlive the Python process that started them."""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
_live: set[ManagedProcess] = set()


def child_setup() -> None:
    """preexec_fn: own session and process group; SIGKILL when the parent (thread) dies."""
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """A process in its own process group with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=child_setup,
            )
        _live.add(self)

    def check_alive(self) -> None:
        """Raise if the process exited, quoting the end of its log."""
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log {self.log_path}:\n{tail}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        _live.discard(self)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.popen.poll() is not None:
                break
        self.popen.wait(timeout=5)
        try:  # kill leftovers of the group (children of a process that already exited)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        proc.stop(grace=3.0)
