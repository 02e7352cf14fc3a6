"""Operator scale benchmark on the dev cluster (real API server, kwok-simulated pods).

    .venv/bin/python benchmarks/operator_scale.py [--jobs 200] [--idle 1000] [--kubeconfig PATH]

Phase 1: ``--jobs`` FineTuneJobs created at once (16 client threads); kwok runs each pod for 1 s
  (1 GPU each: the kwok nodes have 17 GPUs, so runs queue on the scheduler in waves).
  Reports apply->Job-created latency p50/p99 (from sending the FineTuneJob's create request to
  the Job's ADDED event on a watch of this process, one clock), time until all are final, API
  requests per job (the operator's own counter of every HTTP request it makes, kopf's included,
  plus the apiserver_request_total delta of the whole cluster for context), operator peak RSS and
  CPU seconds.
Phase 2: a fresh operator and ``--idle`` suspended FineTuneJobs (each gets its ConfigMap,
  ServiceAccount and suspended Job): RSS once all are Suspended; then the RSS of a second operator
  process started on them (a restart or a new leader), 20 s after it is ready.
Targets: p50 < 1 s, p99 < 3 s, RSS < 150 MB at 1,000.

Without --kubeconfig it starts its own dev cluster (finetune_devcluster) and stops it afterwards.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from finetune_devcluster import KWOK_TOLERATION
from finetune_devcluster.controlplane import free_port

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
RULES = ROOT / "charts" / "finetune-operator" / "files" / "rbac-rules.yaml"
TRAINER_RULES = ROOT / "charts" / "finetune-operator" / "files" / "trainer-rules.yaml"
TRAINER_CLUSTER_ROLE = "finetune-operator-trainer"  # the name rbac-rules.yaml lets the operator bind
OPERATOR = Path(sys.executable).with_name("finetune-operator")
G, V, P = "finetune.dev", "v1alpha1", "finetunejobs"


def kubectl(kc: str, *args: str, input: str | None = None) -> str:
    r = subprocess.run(
        ["kubectl", f"--kubeconfig={kc}", *args], input=input, capture_output=True, text=True, timeout=300
    )
    if r.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def ftj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "builtin:smollm2-135m-instruct"},
            "dataset": {"source": "/data/train.jsonl"},
            "output": {"pvc": "artifacts"},
            "resources": {"gpus": 1, "cpu": "100m", "memory": "1Gi"},
            "scheduling": {"tolerations": [KWOK_TOLERATION]},  # the simulated GPU nodes
            **spec,
        },
    }


def provision_claims(kc: str, ns: str) -> None:
    """The output claim, bound to a hostPath PV (pods with unbound claims are unschedulable)."""
    pv = f"{ns}-artifacts"
    kubectl(
        kc,
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolume",
                        "metadata": {"name": pv},
                        "spec": {
                            "capacity": {"storage": "1Gi"},
                            "accessModes": ["ReadWriteMany"],
                            "storageClassName": "",
                            "hostPath": {"path": f"/var/tmp/finetune-bench/{pv}", "type": "DirectoryOrCreate"},
                            "claimRef": {"namespace": ns, "name": "artifacts"},
                        },
                    },
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "artifacts", "namespace": ns},
                        "spec": {
                            "accessModes": ["ReadWriteMany"],
                            "storageClassName": "",
                            "volumeName": pv,
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    },
                ],
            }
        ),
    )


def operator_kubeconfig(kc: str, ns: str, workdir: Path) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    objs = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": TRAINER_CLUSTER_ROLE},
            "rules": yaml.safe_load(TRAINER_RULES.read_text()),
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "finetune-operator", "namespace": ns}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "finetune-operator", "namespace": ns},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "finetune-operator", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "finetune-operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "finetune-operator", "namespace": ns}],
        },
    ]
    kubectl(kc, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    token = kubectl(kc, "-n", ns, "create", "token", "finetune-operator", "--duration=4h").strip()
    admin = yaml.safe_load(Path(kc).read_text())
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "op",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "op", "user": {"token": token}}],
        "contexts": [{"name": "op", "context": {"cluster": "c", "user": "op", "namespace": ns}}],
    }
    path = workdir / f"operator-{ns}.kubeconfig"
    path.write_text(yaml.safe_dump(out))
    return path


class Operator:
    def __init__(self, kc: str, ns: str, workdir: Path):
        self.metrics_port, self.health_port = free_port(), free_port()
        okc = operator_kubeconfig(kc, ns, workdir)
        self.log = open(workdir / f"operator-{ns}.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(OPERATOR),
                "--namespace",
                ns,
                "--kubeconfig",
                str(okc),
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
                "--lease-namespace",
                ns,
                "--log-level",
                "WARNING",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("operator not ready")

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) / 1024  # noqa: E731
        return get("VmRSS"), get("VmHWM")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def requests(self) -> dict[str, float]:
        """The operator's own count of its HTTP requests to the API server, by method."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'^finetune_operator_api_requests_total\{method="([A-Z]+)"\} ([0-9.e+]+)$', text, re.M)
        }

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def apiserver_requests(kc: str) -> float:
    text = kubectl(kc, "get", "--raw", "/metrics")
    return sum(float(m.group(1)) for m in re.finditer(r"^apiserver_request_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def phase1(kc: str, api: client.ApiClient, n: int, workdir: Path) -> dict[str, Any]:
    ns = f"bench-{int(time.time())}"
    kubectl(kc, "create", "namespace", ns)
    provision_claims(kc, ns)
    op = Operator(kc, ns, workdir)
    custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
    job_seen: dict[str, float] = {}
    stop = threading.Event()

    def watch_jobs() -> None:
        resource_version = batch.list_namespaced_job(ns).metadata.resource_version
        while not stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    batch.list_namespaced_job, ns, resource_version=resource_version, timeout_seconds=30
                ):
                    resource_version = ev["object"].metadata.resource_version
                    if ev["type"] == "ADDED":
                        label = (ev["object"].metadata.labels or {}).get("finetune.dev/finetunejob")
                        if label:
                            job_seen.setdefault(label, time.monotonic())
                    if stop.is_set():
                        w.stop()
                        break
            except Exception:  # noqa: BLE001 - the stream broke (or the cluster is stopping)
                if stop.is_set():
                    return
                time.sleep(0.2)

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    time.sleep(1.0)
    req0, api0, cpu0 = op.requests(), apiserver_requests(kc), op.cpu_seconds()
    created: dict[str, float] = {}

    def create(i: int) -> None:
        name = f"j{i:04d}"
        created[name] = time.monotonic()  # when the create request is sent (conservative: includes its round trip)
        custom.create_namespaced_custom_object(
            G, V, ns, P, ftj(name, podAnnotations={"sim.finetune.dev/duration": "1s"})
        )

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(n)))
    apply_s = time.monotonic() - t0
    peak_rss = 0.0
    while True:
        items = custom.list_namespaced_custom_object(G, V, ns, P)["items"]
        final = sum(1 for o in items if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
        peak_rss = max(peak_rss, op.rss_mb()[1])
        if final == n:
            break
        if time.monotonic() - t0 > 900:
            raise RuntimeError(f"only {final}/{n} final after 900s")
        time.sleep(0.5)
    all_final = time.monotonic() - t0
    failed = sum(1 for o in items if o["status"]["phase"] == "Failed")
    time.sleep(2)  # let trailing writes land
    req1, api1, cpu1 = op.requests(), apiserver_requests(kc), op.cpu_seconds()
    by_method = {m: round((req1.get(m, 0) - req0.get(m, 0)) / n, 2) for m in sorted(req1)}
    writes = sum(v for m, v in by_method.items() if m in ("POST", "PUT", "PATCH", "DELETE"))
    stop.set()
    lat = [job_seen[k] - created[k] for k in created if k in job_seen]
    rss, hwm = op.rss_mb()
    op.stop()
    kubectl(kc, "delete", "namespace", ns, "--wait=false")
    return {
        "jobs": n,
        "apply_seconds": round(apply_s, 2),
        "jobs_created": len(lat),
        "latency_p50_s": round(pct(lat, 0.5), 3),
        "latency_p99_s": round(pct(lat, 0.99), 3),
        "latency_max_s": round(max(lat), 3),
        "latency_mean_s": round(statistics.mean(lat), 3),
        "all_final_seconds": round(all_final, 1),
        "failed": failed,
        "operator_requests_per_job": round(sum(by_method.values()), 1),
        "operator_writes_per_job": round(writes, 1),
        "operator_requests_per_job_by_method": by_method,
        "apiserver_requests_per_job_whole_cluster": round((api1 - api0) / n, 1),
        "operator_cpu_seconds": round(cpu1 - cpu0, 1),
        "operator_peak_rss_mb": round(max(peak_rss, hwm), 1),
    }


def phase2(kc: str, api: client.ApiClient, n: int, workdir: Path) -> dict[str, Any]:
    ns = f"idle-{int(time.time())}"
    kubectl(kc, "create", "namespace", ns)
    provision_claims(kc, ns)
    op = Operator(kc, ns, workdir)
    custom = client.CustomObjectsApi(api)
    cpu0 = op.cpu_seconds()
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(G, V, ns, P, ftj(f"idle{i:04d}", suspend=True)),
                range(n),
            )
        )
    while True:
        items = custom.list_namespaced_custom_object(G, V, ns, P)["items"]
        done = sum(1 for o in items if (o.get("status") or {}).get("phase") == "Suspended")
        if done == n:
            break
        if time.monotonic() - t0 > 900:
            raise RuntimeError(f"only {done}/{n} suspended after 900s")
        time.sleep(1)
    settle = time.monotonic() - t0
    time.sleep(5)
    rss, hwm = op.rss_mb()
    cpu = op.cpu_seconds() - cpu0
    # idle CPU over 20 s
    c0 = op.cpu_seconds()
    time.sleep(20)
    idle_cpu = (op.cpu_seconds() - c0) / 20
    op.stop()
    # a restarted operator (or a new leader) takes over the n FineTuneJobs and their Jobs
    t1 = time.monotonic()
    op = Operator(kc, ns, workdir)
    ready = time.monotonic() - t1
    time.sleep(20)
    restart_rss, restart_hwm = op.rss_mb()
    restart_requests = sum(op.requests().values())
    op.stop()
    kubectl(kc, "delete", "namespace", ns, "--wait=false")
    return {
        "idle_jobs": n,
        "all_suspended_seconds": round(settle, 1),
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(hwm, 1),
        "cpu_seconds_to_settle": round(cpu, 1),
        "idle_cpu_cores": round(idle_cpu, 3),
        "restart_ready_seconds": round(ready, 1),
        "restart_rss_mb": round(restart_rss, 1),
        "restart_peak_rss_mb": round(restart_hwm, 1),
        "restart_requests": int(restart_requests),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--kubeconfig")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    cluster = None
    kc = args.kubeconfig
    if not kc:
        from finetune_devcluster.cluster import DevCluster

        cluster = DevCluster(workdir / "cluster").start()
        kc = str(cluster.kubeconfig)
    try:
        config.load_kube_config(kc)
        api = client.ApiClient()
        if cluster is not None:
            os.environ["PATH"] = f"{cluster.control_plane.bin_dir}:{os.environ['PATH']}"
        kubectl(kc, "apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        kubectl(kc, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{P}.{G}")
        results: dict[str, Any] = {}
        if args.jobs:
            results["burst"] = phase1(kc, api, args.jobs, workdir)
            print(json.dumps(results["burst"], indent=2), flush=True)
        if args.idle:
            results["idle"] = phase2(kc, api, args.idle, workdir)
            print(json.dumps(results["idle"], indent=2), flush=True)
        results["cpus"] = os.cpu_count()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"operator logs in {workdir}")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
