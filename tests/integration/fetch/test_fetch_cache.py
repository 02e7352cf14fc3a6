"""The fetch destination as a shared cache: two fetches of one entry download it once, a crashed
holder's half-written directory is swept and never used, and a destination that fills up fails as
CacheFull with nothing left (a real tmpfs of 1 MiB, mounted for the test)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_api.protocol import ExitCode, fetch_entry_name
from finetune_devcluster.dataservers import HUB_MODEL
from support.fetching import fetch_env, finish, leftovers, run_fetch, start_fetch

TRAIN = (Path(__file__).resolve().parents[3] / "examples" / "log-intent" / "train.jsonl").read_bytes()


def _resolve_gets(hub, repo: str, name: str) -> int:
    """GETs of `name` of `repo` in the Hub stand-in's access log so far."""
    log = Path(hub.procs[0].log_path).read_text().splitlines()
    return sum(1 for line in log if f'"GET /{repo}/resolve/' in line and f"/{name} " in line)


def _wait_for_text(proc: subprocess.Popen[str], lines: list[str], text: str, timeout: float = 60) -> None:
    """Read `proc`'s stderr into `lines` until a line holds `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline() if proc.stderr else ""
        lines.append(line)
        if text in line:
            return
        assert line or proc.poll() is None, f"fetch ended before saying {text!r}: {''.join(lines)}"
    raise AssertionError(f"no {text!r} within {timeout}s: {''.join(lines)}")


def test_two_concurrent_fetches_of_one_model_download_it_once(hub, tmp_path):
    """Both fetches start while the entry's lock is held (here, by the test); once it is released, one
    downloads and the other waits for it and reuses its entry."""
    env = fetch_env(hub=hub, ca=hub.ca)
    entry = fetch_entry_name(f"hf://{HUB_MODEL}", "main")
    (tmp_path / ".locks").mkdir(parents=True)
    before = _resolve_gets(hub, HUB_MODEL, "model.safetensors")
    with open(tmp_path / ".locks" / f"{entry}.lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        procs = [start_fetch(tmp_path, env, "--source", f"hf://{HUB_MODEL}", "--revision", "main") for _ in range(2)]
        logs: list[list[str]] = [[], []]
        for proc, lines in zip(procs, logs, strict=True):
            _wait_for_text(proc, lines, "waiting for another fetch")
    results = [finish(p) for p in procs]
    assert [r.code for r in results] == [0, 0], [r.stderr for r in results]
    assert sorted(r.output["cached"] for r in results) == [False, True]
    assert results[0].output["path"] == results[1].output["path"] == str(tmp_path / entry)
    assert _resolve_gets(hub, HUB_MODEL, "model.safetensors") - before == 1
    assert leftovers(tmp_path) == [entry]


def test_a_crashed_holders_leftovers_are_swept_and_never_used(hub, tmp_path):
    """A fetch killed mid-download (SIGKILL: no cleanup) leaves its temporary directory; the kernel
    releases its lock, and the next fetch removes the leftovers and downloads afresh."""
    env = fetch_env(hub=hub, ca=hub.ca)
    entry = fetch_entry_name(f"hf://{HUB_MODEL}", "main")
    crash = (
        "import fcntl, pathlib, sys, time\n"
        "root, entry = pathlib.Path(sys.argv[1]), sys.argv[2]\n"
        "half = root / '.tmp' / f'{entry}.crashed'\n"
        "half.mkdir(parents=True); (root / '.locks').mkdir()\n"
        "(half / 'model.safetensors').write_bytes(b'half')\n"
        "f = open(root / '.locks' / f'{entry}.lock', 'w'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
        "print('holding', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", crash, str(tmp_path), entry], stdout=subprocess.PIPE, text=True)
    assert holder.stdout and holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait(timeout=10)
    assert (tmp_path / ".tmp" / f"{entry}.crashed").exists()
    result = run_fetch(tmp_path, env, "--source", f"hf://{HUB_MODEL}", "--revision", "main")
    assert (result.code, result.output["cached"]) == (0, False), result.stderr
    assert "left by a fetch that did not finish" in result.stderr
    assert leftovers(tmp_path) == [entry]
    assert (tmp_path / entry / "model.safetensors").stat().st_size > 1000


@pytest.fixture
def small_volume(tmp_path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a volume that fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_model_larger_than_the_volume_is_refused_before_downloading(hub, small_volume):
    result = run_fetch(small_volume, fetch_env(hub=hub, ca=hub.ca), "--source", f"hf://{HUB_MODEL}")
    assert (result.code, result.output["reason"]) == (ExitCode.CACHE_FULL, "CacheFull"), result.output
    assert "bytes, " in result.output["message"] and "free" in result.output["message"]
    assert leftovers(small_volume) == []


def test_a_download_of_unknown_size_that_fills_the_volume(https_files, small_volume):
    """No Content-Length (chunked): nothing to check beforehand; the write hits ENOSPC halfway."""
    big = TRAIN * 4  # 1.4 MB
    https_files.put("big/train.jsonl", big)
    source = f"{https_files.url}/_nolength/big/train.jsonl"
    sha = hashlib.sha256(big).hexdigest()
    result = run_fetch(small_volume, fetch_env(ca=https_files.ca), "--source", source, "--sha256", sha)
    assert (result.code, result.output["reason"]) == (ExitCode.CACHE_FULL, "CacheFull"), result.output
    assert "no space left" in result.output["message"]
    assert leftovers(small_volume) == [] and os.statvfs(small_volume).f_bfree > 200
