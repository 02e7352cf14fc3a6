"""finetune-devcluster up|down|env|node|build: the local cluster by hand."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from . import binaries
from .cluster import DevCluster

DEFAULT_WORKDIR = Path("/tmp/finetune-devcluster")


def _node_dir(workdir: Path, node: int) -> Path:
    """The workdir of real node `node` (1: `dev-node`, 2: `dev-node-2`, ...)."""
    return workdir / ("node" if node == 1 else f"node-{node}")


def _env_lines(workdir: Path) -> str:
    return (
        f"export KUBECONFIG={workdir / 'admin.kubeconfig'}\n"
        f"export PATH={binaries.bin_dir()}:{binaries.node_dir() / 'bin'}:$PATH\n"
        f"export CRI_CONFIG_FILE={workdir / 'node' / 'crictl.yaml'}\n"
        f"export CONTAINERD_ADDRESS={workdir / 'node' / 'containerd-run' / 'containerd.sock'} "
        "CONTAINERD_NAMESPACE=k8s.io"
    )


def node_exec(workdir: Path, argv: list[str], node: int = 1) -> None:
    """Run argv inside a real node's namespaces (PID, mount, network), e.g. `crictl logs`, `iptables-save`."""
    pidfile = _node_dir(workdir, node) / "init.pid"
    if not pidfile.exists() or not Path(f"/proc/{pidfile.read_text().strip()}").exists():
        raise SystemExit(f"no dev node {node} running from {workdir}")
    path = f"{binaries.node_dir() / 'bin'}:{binaries.bin_dir()}:{os.environ.get('PATH', '')}"
    os.execvpe(
        "nsenter",
        ["nsenter", f"--target={pidfile.read_text().strip()}", "--pid", "--mount", "--net", "--", *(argv or ["bash"])],
        {
            **os.environ,
            "PATH": path,
            "CRI_CONFIG_FILE": str(_node_dir(workdir, node) / "crictl.yaml"),
            "CONTAINERD_NAMESPACE": "k8s.io",
        },
    )


def up(workdir: Path, with_node: bool, gpus: int, nodes: int = 1) -> None:
    """Run the cluster in the foreground until SIGINT/SIGTERM."""
    pidfile = workdir / "devcluster.pid"
    workdir.mkdir(parents=True, exist_ok=True)
    if pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists():
        raise SystemExit(f"a devcluster already runs from {workdir} (pid {pidfile.read_text().strip()})")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dev = DevCluster(workdir, dev_node=with_node or nodes > 1, gpus=gpus, real_nodes=nodes)
    t0 = time.monotonic()
    dev.start()
    try:
        if dev.node:
            dev.start_nodes()
        pidfile.write_text(str(os.getpid()))
        print(f"devcluster ready in {time.monotonic() - t0:.1f}s at {dev.server}; logs in {workdir / 'logs'}")
        print(_env_lines(workdir), flush=True)
        while not stop:
            for proc in dev.control_plane.procs + [p for p in (dev.kwok,) if p]:
                proc.check_alive()
            dev.check_nodes()
            time.sleep(1)
    finally:
        print("stopping devcluster", flush=True)
        dev.stop()
        pidfile.unlink(missing_ok=True)


def down(workdir: Path, timeout: float = 60.0) -> None:
    """SIGTERM the `up` process of workdir and wait for it to exit."""
    pidfile = workdir / "devcluster.pid"
    if not pidfile.exists():
        raise SystemExit(f"no devcluster running from {workdir}")
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="finetune-devcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start the cluster in the foreground (Ctrl-C stops it)")
    p_up.add_argument(
        "--with-node", action="store_true", help="add the real node (kubelet + containerd + kube-proxy) that runs pods"
    )
    p_up.add_argument("--gpus", type=int, default=1, help="fake nvidia.com/gpu devices each real node advertises")
    p_up.add_argument(
        "--nodes", type=int, default=1, help="real nodes (dev-node, dev-node-2, ...); more than 1 implies --with-node"
    )
    p_node = sub.add_parser("node", help="run a command inside a real node's namespaces (default: bash)")
    p_node.add_argument("--node", type=int, default=1, help="which real node: 1 (dev-node), 2 (dev-node-2), ...")
    p_node.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...], e.g. -- crictl ps -a")
    for p in (
        p_up,
        p_node,
        sub.add_parser("down", help="stop a cluster started by `up`"),
        sub.add_parser("env", help="print shell exports for kubectl/helm/crictl/ctr"),
    ):
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    sub.add_parser("build", help="build the pinned binaries (hack/build-k8s-binaries.sh, build-node-binaries.sh)")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        up(args.workdir.resolve(), args.with_node, args.gpus, args.nodes)
    elif args.cmd == "node":
        node_exec(args.workdir.resolve(), args.argv[1:] if args.argv[:1] == ["--"] else args.argv, args.node)
    elif args.cmd == "down":
        down(args.workdir.resolve())
    elif args.cmd == "env":
        print(_env_lines(args.workdir.resolve()))
    else:
        binaries.build()
        binaries.ensure_node_binaries()


if __name__ == "__main__":
    main()
