"""The quick-start demo (`make demo`): the log-intent classifier, trained through the whole chain.

1. starts a local control plane with the development-only local-runner node (it runs pods as
   local processes: the trainer really trains, on this machine's CPU);
2. `helm install`s the chart (CRD, ServiceAccount, RBAC; `replicas=0` because nothing here can pull
   the operator image) and runs the operator as a local process under the chart's ServiceAccount;
3. puts the example's data on a claim and applies examples/log-intent/finetunejob.yaml;
4. follows the FineTuneJob's status and prints the outcome and where the artifacts are.

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
from finetune_devcluster import DevCluster, binaries
from finetune_devcluster.accounts import service_account_kubeconfig
from finetune_devcluster.controlplane import free_port

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


def host_claim(core: client.CoreV1Api, name: str, host_dir: Path) -> None:
    """A PVC bound to a hostPath PV on this machine (what the local runner mounts into the pod)."""
    host_dir.mkdir(parents=True, exist_ok=True)
    core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{DEMO_NS}-{name}"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(host_dir)},
                 "claimRef": {"namespace": DEMO_NS, "name": name}}})
    core.create_namespaced_persistent_volume_claim(DEMO_NS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"{DEMO_NS}-{name}",
                 "resources": {"requests": {"storage": "10Gi"}}}})


def start_operator(dev: DevCluster, api: client.ApiClient, workdir: Path) -> subprocess.Popen:
    kubeconfig = service_account_kubeconfig(api, dev.kubeconfig, OPERATOR_NS, RELEASE, workdir / "operator.kubeconfig")
    log = open(workdir / "operator.log", "ab")
    argv = [str(Path(sys.executable).with_name("finetune-operator")), "--all-namespaces",
            "--kubeconfig", str(kubeconfig), "--trainer-image", "finetune-trainer:dev",
            "--lease-namespace", OPERATOR_NS, "--health-port", str(free_port()), "--metrics-port", str(free_port())]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            start_new_session=True)


def follow(custom: client.CustomObjectsApi, name: str, operator: subprocess.Popen, timeout: float) -> dict:
    """Print phase and progress changes until the FineTuneJob is final; return it."""
    shown, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit("the operator exited; see operator.log in the workdir")
        ftj = custom.get_namespaced_custom_object(GROUP, VERSION, DEMO_NS, PLURAL, name)
        status = ftj.get("status") or {}
        progress = status.get("progress") or {}
        line = (f"phase={status.get('phase', '-')} stage={progress.get('stage', '-')} "
                f"step={progress.get('step', '-')}/{progress.get('totalSteps', '-')} loss={progress.get('loss', '-')}")
        if line != shown:
            print(f"    {time.strftime('%H:%M:%S')} {line}", flush=True)
            shown = line
        if status.get("phase") in ("Succeeded", "Failed"):
            return ftj
        time.sleep(2)
    raise SystemExit(f"FineTuneJob {name} not finished after {timeout:.0f}s")


def report(ftj: dict, artifacts_host: Path) -> None:
    status = ftj["status"]
    metrics = status.get("metrics") or {}
    print(f"\nFineTuneJob {DEMO_NS}/{ftj['metadata']['name']}: {status['phase']}"
          + (f" ({status.get('reason')}: {status.get('message')})" if status["phase"] != "Succeeded" else ""))
    for key in ("baselineAccuracy", "accuracy", "baselineMacroF1", "macroF1", "baselineEvalLoss", "evalLoss"):
        if key in metrics:
            print(f"  {key:18} {metrics[key]:.4f}")
    art = status.get("artifacts") or {}
    if art:
        print(f"  artifacts          pvc://{art['pvc']}/{art['path']} ({art.get('sizeBytes', 0) / 1e6:.2f} MB: adapter, reports, tokenizer)")
        host = artifacts_host / art["path"]
        print(f"  on this machine    {host}")
        print(f"  eval report        {host / 'eval_report.md'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="cluster state and volumes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running (Ctrl-C to stop)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="finetune-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{binaries.bin_dir()}:{Path(sys.executable).parent}:{os.environ['PATH']}"}

    say(f"starting a local control plane with the local-runner node (state in {workdir})")
    t0 = time.monotonic()
    dev = DevCluster(workdir / "cluster", nodes=()).start()
    operator = None
    try:
        dev.start_local_runner(fake_gpus=1)
        env["KUBECONFIG"] = str(dev.kubeconfig)
        print(f"    ready in {time.monotonic() - t0:.1f}s; export KUBECONFIG={dev.kubeconfig}", flush=True)

        say("helm install: CRD, ServiceAccount and RBAC from charts/finetune-operator")
        run("helm", "install", RELEASE, str(ROOT / "charts" / "finetune-operator"), "--namespace", OPERATOR_NS,
            "--create-namespace", "--set", "replicas=0", "--wait", env=env)
        api = dev.api_client()
        say("running the operator as a local process under the chart's ServiceAccount")
        operator = start_operator(dev, api, workdir)

        say("putting the log-intent data on claim `datasets` and creating claim `artifacts`")
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": DEMO_NS}})
        volumes = workdir / "volumes"
        data_dir = volumes / "datasets" / "log-intent"
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in ("train.jsonl", "eval.jsonl"):
            shutil.copy(EXAMPLE / name, data_dir / name)
        host_claim(core, "datasets", volumes / "datasets")
        host_claim(core, "artifacts", volumes / "artifacts")

        say("kubectl apply -f examples/log-intent/finetunejob.yaml")
        print(run("kubectl", "apply", "-n", DEMO_NS, "-f", str(EXAMPLE / "finetunejob.yaml"), env=env), end="")
        name = yaml.safe_load((EXAMPLE / "finetunejob.yaml").read_text())["metadata"]["name"]
        say("training (status from the cluster; the trainer's own log is under the local-runner's pod dir)")
        ftj = follow(client.CustomObjectsApi(api), name, operator, args.timeout)
        print(run("kubectl", "get", "ftj", "-n", DEMO_NS, "-o", "wide", env=env), end="")
        report(ftj, volumes / "artifacts")
        if args.keep:
            say("cluster left running; Ctrl-C to stop")
            try:
                while operator.poll() is None:
                    time.sleep(5)
            except KeyboardInterrupt:
                pass
        return 0 if ftj["status"]["phase"] == "Succeeded" else 1
    finally:
        if operator and operator.poll() is None:
            operator.terminate()
            operator.wait(20)
        dev.stop()
        say(f"stopped; artifacts and logs stay in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
