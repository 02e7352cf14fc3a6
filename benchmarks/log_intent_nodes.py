#!/usr/bin/env python3
"""Benchmark: the log-intent example (examples/log-intent, MiniLM-L6) on CPU as one process, as one
node with two processes, and as two nodes with one process each.

The two-node run is two ``finetune-train`` "pods" on this machine, started as the operator's
Indexed Job starts them: the same config, ``FINETUNE_NNODES=2``, node ranks 0 and 1, a c10d
rendezvous on 127.0.0.1 (``finetune_api.distributed``), gloo between the processes over loopback.
All three runs train with the same global batch (the example's batch 16 x 2: the single process
accumulates two batches), so their loss curves are comparable step for step; the two runs of two
processes also see the same data order, so theirs should match up to float rounding.

Prints, per layout, the wall time (start to the last process's exit), the trainer's training time,
the loss every ``--every`` steps and the eval accuracy; the largest loss difference between the
two-process layouts; the load average. Writes every figure to ``--json``.

    .venv/bin/python benchmarks/log_intent_nodes.py [--layouts 1x1 1x2 2x1] [--threads 1]
        [--out DIR] [--json FILE] [--set training.epochs=1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from log_intent_minilm import trainer_config
from trainer_run import trainer_env

LAYOUTS = ("1x1", "1x2", "2x1")  # nodes x processes per node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_envs(layout: str, threads: int) -> list[dict[str, str]]:
    """The environment of each "pod" of a layout."""
    nodes, processes = (int(x) for x in layout.split("x"))
    base = dict(trainer_env(threads), FINETUNE_PROCESSES=str(processes))
    if nodes == 1:
        return [base]
    endpoint = f"127.0.0.1:{free_port()}"
    return [
        dict(
            base,
            FINETUNE_NNODES=str(nodes),
            FINETUNE_NODE_RANK=str(node),
            FINETUNE_RDZV_ENDPOINT=endpoint,
            FINETUNE_RDZV_TIMEOUT_SECONDS="300",
            FINETUNE_NODE_ADDRESS=f"127.0.0.{node + 1}",  # loopback addresses that order the nodes
        )
        for node in range(nodes)
    ]


def run_layout(layout: str, overrides: list[str], threads: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = trainer_config(out)
    processes = int(layout.split("x")[0]) * int(layout.split("x")[1])
    # the same global batch in every layout: 16 x 2
    cfg["training"]["gradientAccumulationSteps"] = max(1, 2 // processes)
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        cfg[section][field] = json.loads(value)
    envs = pod_envs(layout, threads)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    pods = []
    for node, env in enumerate(envs):
        node_cfg = dict(cfg, reporting={**cfg["reporting"], "terminationMessagePath": str(out / f"node{node}.term")})
        path = out / f"node{node}.json"
        path.write_text(json.dumps(node_cfg, indent=2))
        with open(out / f"node{node}.log", "w") as log:
            pods.append(
                subprocess.Popen(
                    [sys.executable, "-m", "finetune_trainer", "--config", str(path)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    codes = [p.wait() for p in pods]
    wall = time.time() - t0
    if any(codes):
        raise SystemExit(f"{layout}: exit codes {codes}; logs in {out}/node*.log")
    m = json.loads((Path(cfg["output"]["dir"]) / "metrics.json").read_text())
    return {
        "layout": layout,
        "nodes": m["nodes"],
        "processes": m["processes"],
        "globalBatchSize": m["globalBatchSize"],
        "steps": m["steps"],
        "wallSeconds": round(wall, 1),
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "evalAccuracy": m["final"].get("accuracy"),
        "evalLoss": m["final"].get("loss"),
        "loadAverage1mBefore": load_before,
        "loadAverage1mAfter": os.getloadavg()[0],
        "trainLosses": [(h["step"], round(h["loss"], 6)) for h in m["trainLosses"]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS), help="NODESxPROCESSES")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--every", type=int, default=1, help="print every N-th logged loss")
    p.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON", help="override a config field")
    a = p.parse_args(argv)
    out = a.out or Path(tempfile.mkdtemp(prefix="log-intent-nodes-"))
    runs = {}
    for layout in a.layouts:
        runs[layout] = r = run_layout(layout, a.set, a.threads, out / layout)
        print(
            f"{layout}: {r['nodes']} node(s), {r['processes']} process(es), global batch {r['globalBatchSize']}, "
            f"{r['steps']} steps; wall {r['wallSeconds']:.0f} s (training {r['trainRuntimeSeconds']:.0f} s); "
            f"eval accuracy {r['evalAccuracy']:.1%}; load average {r['loadAverage1mBefore']:.1f} -> "
            f"{r['loadAverage1mAfter']:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )
    print("\nloss by step: " + "  ".join(f"{layout:>9}" for layout in runs))
    curves = {layout: dict(r["trainLosses"]) for layout, r in runs.items()}
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    for step in steps[:: max(1, a.every)] + ([steps[-1]] if steps else []):
        print(f"{step:>12}: " + "  ".join(f"{curves[layout][step]:>9.4f}" for layout in runs))
    result = {"cpus": os.cpu_count(), "threads": a.threads, "overrides": a.set, "runs": runs}
    if "1x2" in curves and "2x1" in curves:
        diff = max(abs(curves["1x2"][s] - curves["2x1"][s]) for s in steps)
        result["maxLossDifference2x1vs1x2"] = diff
        print(f"largest loss difference, 2 nodes x 1 vs 1 node x 2 processes: {diff:.2e}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"artifacts and logs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
