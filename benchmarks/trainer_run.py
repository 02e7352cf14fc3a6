"""Run ``finetune-train`` the way the CPU benchmarks do: one config file, a subprocess (so its
memory and threads are its own), offline, a fixed number of CPU threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def trainer_env(threads: int) -> dict[str, str]:
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )


def run_evaluate(args: list[str], threads: int) -> dict:
    """``finetune-train evaluate ARGS``: its JSON result; exits with its error when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "finetune_trainer", "evaluate", *args],
        env=trainer_env(threads),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"finetune-train evaluate {' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def run_trainer(
    config: dict, config_path: Path, threads: int, stdout: IO | int = subprocess.DEVNULL
) -> tuple[dict, float]:
    """Write ``config`` to ``config_path``, train, return (``metrics.json``, wall seconds).

    Exits with the trainer's stderr tail and exit code when it fails."""
    config_path.write_text(json.dumps(config, indent=2))
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "finetune_trainer", "--config", str(config_path)],
        env=trainer_env(threads),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"finetune-train ({config_path}) failed with exit code {proc.returncode}")
    return json.loads((Path(config["output"]["dir"]) / "metrics.json").read_text()), wall
