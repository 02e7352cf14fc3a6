"""The quick-start demo (`make demo`): the log-intent classifier, trained through the whole chain.

1. starts a local cluster (control plane on this machine) with one real node: kubelet,
   containerd, runc, CNI bridge and kube-proxy, in their own namespaces; the node advertises one
   development-only fake GPU;
2. builds the operator and trainer images from Dockerfile.operator and Dockerfile.trainer (or
   reuses them when their inputs are unchanged) and loads them into the node's containerd;
3. `helm install`s the chart: the operator runs as the chart's Deployment on the node;
4. puts the example's data on a claim (a `local` PersistentVolume on the node) and applies
   examples/log-intent/finetunejob.yaml in a namespace under Pod Security `restricted`;
5. follows the FineTuneJob's status and prints the outcome, where the artifacts, the model card
   and the serving manifests are, and which node and container ran the trainer.

    python hack/demo.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client

from finetune_api import GROUP, PLURAL, VERSION
from finetune_devcluster import DevCluster, binaries, images

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "log-intent"
RELEASE, OPERATOR_NS, DEMO_NS = "finetune-operator", "finetune-system", "demo"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(*argv: str, env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def follow(custom: client.CustomObjectsApi, name: str, dev: DevCluster, timeout: float) -> dict:
    """Print phase and progress changes until the FineTuneJob is final; return it."""
    shown, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dev.node
        dev.node.check_alive()
        ftj = custom.get_namespaced_custom_object(GROUP, VERSION, DEMO_NS, PLURAL, name)
        status = ftj.get("status") or {}
        progress = status.get("progress") or {}
        line = (
            f"phase={status.get('phase', '-')} stage={progress.get('stage', '-')} "
            f"step={progress.get('step', '-')}/{progress.get('totalSteps', '-')} loss={progress.get('loss', '-')}"
        )
        if line != shown:
            print(f"    {time.strftime('%H:%M:%S')} {line}", flush=True)
            shown = line
        if status.get("phase") in ("Succeeded", "Failed"):
            return ftj
        time.sleep(2)
    raise SystemExit(f"FineTuneJob {name} not finished after {timeout:.0f}s")


def report(ftj: dict, core: client.CoreV1Api, artifacts_host: Path) -> None:
    status = ftj["status"]
    metrics = status.get("metrics") or {}
    print(
        f"\nFineTuneJob {DEMO_NS}/{ftj['metadata']['name']}: {status['phase']}"
        + (f" ({status.get('reason')}: {status.get('message')})" if status["phase"] != "Succeeded" else "")
    )
    for key in ("baselineAccuracy", "accuracy", "baselineMacroF1", "macroF1", "baselineEvalLoss", "evalLoss"):
        if key in metrics:
            print(f"  {key:18} {metrics[key]:.4f}")
    art = status.get("artifacts") or {}
    if art:
        print(
            f"  artifacts          pvc://{art['pvc']}/{art['path']} "
            f"({art.get('sizeBytes', 0) / 1e6:.2f} MB: adapter, reports, tokenizer"
            f"{', merged model' if (status.get('serving') or {}).get('mergedUri') else ''})"
        )
        host = artifacts_host / art["path"]
        print(f"  on this machine    {host}")
        print(f"  eval report        {host / 'eval_report.md'}")
        print(f"  model card         {host / 'README.md'}")
        serving_report(status.get("serving") or {}, host)
    if status.get("podName"):
        pod = core.read_namespaced_pod(status["podName"], DEMO_NS)
        container = (pod.status.container_statuses or [None])[0]
        print(f"  trainer pod        {pod.metadata.name} on node {pod.spec.node_name}")
        if container:
            print(f"  container          {container.container_id} ({container.image})")


def serving_report(serving: dict, host: Path) -> None:
    """status.serving and the manifests written next to the adapter (docs/serving.md)."""
    if not serving:
        return
    print(
        f"  serving            {serving['taskType']} adapter of {serving['baseModel']}, r={serving['loraRank']}: "
        f"{', '.join(serving.get('runtimes') or []) or 'no serving path'} ({serving.get('manifests', '-')})"
    )
    for manifest in sorted((host / "serving").glob("*.yaml")):
        print(f"  manifest           {manifest}")
    if serving.get("note"):
        print(f"  serving note       {serving['note']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="cluster state and volumes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running (Ctrl-C to stop)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="finetune-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{binaries.bin_dir()}:{Path(sys.executable).parent}:{os.environ['PATH']}"}

    say(f"starting a local cluster with a real node (state in {workdir})")
    t0 = time.monotonic()
    dev = DevCluster(workdir / "cluster", nodes=(), gpus=1).start()
    try:
        node_name = dev.start_node()
        env["KUBECONFIG"] = str(dev.kubeconfig)
        api = dev.api_client()
        core = client.CoreV1Api(api)
        info = core.read_node(node_name).status.node_info
        print(
            f"    node {node_name} Ready in {time.monotonic() - t0:.1f}s: kubelet {info.kubelet_version}, "
            f"{info.container_runtime_version}, 1 fake nvidia.com/gpu; export KUBECONFIG={dev.kubeconfig}",
            flush=True,
        )

        say("images from Dockerfile.operator and Dockerfile.trainer (BuildKit), loaded into the node's containerd")
        refs = images.build_and_load(dev)
        print(f"    {refs.operator}\n    {refs.trainer}", flush=True)

        say("helm install: CRD, RBAC, admission policies and the operator Deployment from charts/finetune-operator")
        (op_repo, op_tag), (tr_repo, tr_tag) = images.Images.split(refs.operator), images.Images.split(refs.trainer)
        # The example's trainer asks for both of this 2-CPU node's CPUs: the operator requests none.
        run(
            "helm",
            "install",
            RELEASE,
            str(ROOT / "charts" / "finetune-operator"),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
            "--set",
            f"image.repository={op_repo}",
            "--set",
            f"image.tag={op_tag}",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            f"trainer.image.repository={tr_repo}",
            "--set",
            f"trainer.image.tag={tr_tag}",
            "--set",
            "trainer.pullPolicy=Never",
            "--set-string",
            "resources.requests.cpu=0",
            env=env,
        )
        print(run("kubectl", "get", "pods", "-n", OPERATOR_NS, "-o", "wide", env=env), end="")

        say(f"namespace {DEMO_NS} (opted in, Pod Security restricted); the log-intent data on claim `datasets`")
        core.create_namespace(
            {
                "metadata": {
                    "name": DEMO_NS,
                    "labels": {"finetune.dev/enabled": "true", "pod-security.kubernetes.io/enforce": "restricted"},
                }
            }
        )
        volumes = workdir / "volumes"
        data_dir = volumes / "datasets" / "log-intent"
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in ("train.jsonl", "eval.jsonl"):
            shutil.copy(EXAMPLE / name, data_dir / name)
        dev.local_claim(DEMO_NS, "datasets", volumes / "datasets")
        dev.local_claim(DEMO_NS, "artifacts", volumes / "artifacts")

        say("kubectl apply -f examples/log-intent/finetunejob.yaml")
        print(run("kubectl", "apply", "-n", DEMO_NS, "-f", str(EXAMPLE / "finetunejob.yaml"), env=env), end="")
        name = yaml.safe_load((EXAMPLE / "finetunejob.yaml").read_text())["metadata"]["name"]
        say(f"training (status from the cluster; the trainer's log: kubectl -n {DEMO_NS} logs job/{name}-trainer)")
        ftj = follow(client.CustomObjectsApi(api), name, dev, args.timeout)
        print(run("kubectl", "get", "ftj", "-n", DEMO_NS, "-o", "wide", env=env), end="")
        report(ftj, core, volumes / "artifacts")
        if args.keep:
            say("cluster left running; Ctrl-C to stop")
            try:
                while True:
                    dev.node.check_alive()
                    time.sleep(5)
            except KeyboardInterrupt:
                pass
        return 0 if ftj["status"]["phase"] == "Succeeded" else 1
    finally:
        dev.stop()
        say(f"stopped; artifacts and logs stay in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
