"""DEVELOPMENT ONLY: a Node, `local-runner`, whose pods run as processes on this machine.

Not a kubelet and not isolated: no images, no cgroups, no networking, no container restarts, no probes.
For each pod bound to the node it runs every container's command+args (resolved on the agent's PATH;
the image is ignored, a container without `command` fails) in a private mount namespace
(`unshare --mount --propagation private`) where the pod's volumes are bind-mounted at their mountPaths.
Mount points missing on the host are created there (empty dirs/files, e.g. /dev/termination-log)
while a container uses them, and removed when the last container using them ends.
Supported volumes: configMap, secret, projected (serviceAccountToken via TokenRequest, configMap,
secret, downwardAPI), downwardAPI, emptyDir, hostPath, and persistentVolumeClaim bound to a
hostPath PersistentVolume. Init containers run one after another,
then all containers together. The default working directory is the pod's folder under --workdir,
where each container's output is also logged (`<container>.log`; the pod annotation
`local-runner.finetune.dev/dir` names the folder).

Node: name `local-runner`, label `finetune.dev/local-runner=true`, no taints, capacity cpu=2,
memory=16Gi, pods=10 and, with --fake-gpus N>0, `nvidia.com/gpu: N` with labels
`nvidia.com/gpu.present=true`, `nvidia.com/gpu.product=local-cpu`. Needs root (unshare, mount).
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from .procs import child_setup

NODE_NAME = "local-runner"
DIR_ANNOTATION = "local-runner.finetune.dev/dir"
SMP = "application/strategic-merge-patch+json"
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
Json = dict[str, Any]


def _now(micro: bool = False) -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _raw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
    """Call a kubernetes client method and return the server's JSON as a dict."""
    return json.loads(fn(*args, _preload_content=False, **kwargs).data)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion; $$ escapes."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class Agent:
    """Registers the node, keeps it alive and runs the pods bound to it."""

    def __init__(self, kubeconfig: str, workdir: Path, fake_gpus: int) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.workdir = workdir
        self.fake_gpus = fake_gpus
        url = urlparse(self.api.configuration.host)
        self.api_host, self.api_port = url.hostname or "127.0.0.1", str(url.port or 443)
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}  # pod uid -> running containers
        self.started: set[str] = set()
        self.deleting: set[str] = set()
        self.killed: set[int] = set()
        self.created: dict[Path, int] = {}  # mount points made on the host -> containers using them
        self.lock = threading.Lock()

    # --- node -------------------------------------------------------------------------------
    def node_status(self) -> Json:
        res = {"cpu": "2", "memory": "16Gi", "pods": "10", "ephemeral-storage": "100Gi"}
        if self.fake_gpus:
            res["nvidia.com/gpu"] = str(self.fake_gpus)
        now = _now()
        conds = [("Ready", "True", "KubeletReady")] + [
            (t, "False", f"KubeletHasNo{t}") for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
        return {"capacity": res, "allocatable": res,
                "conditions": [{"type": t, "status": s, "reason": r, "message": "local-runner agent",
                                "lastHeartbeatTime": now, "lastTransitionTime": now} for t, s, r in conds],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": NODE_NAME}],
                "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "local-runner",
                             "containerRuntimeVersion": "local://", "kernelVersion": os.uname().release,
                             "osImage": "", "bootID": "", "machineID": "", "systemUUID": "",
                             "kubeProxyVersion": ""}}

    def register(self) -> None:
        labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "finetune.dev/local-runner": "true"}
        if self.fake_gpus:
            labels |= {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "local-cpu"}
        try:
            self.core.delete_node(NODE_NAME)  # a node left by an earlier run
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.core.create_node({"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": NODE_NAME, "labels": labels}, "status": self.node_status()})

    def heartbeat(self) -> None:
        """Renew the node Lease and the node conditions every 10 s."""
        coord = client.CoordinationV1Api(self.api)
        ns = "kube-node-lease"
        while True:
            lease = {"metadata": {"name": NODE_NAME, "namespace": ns},
                     "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": _now(True)}}
            try:
                try:
                    coord.patch_namespaced_lease(NODE_NAME, ns, lease, _content_type=SMP)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    coord.create_namespaced_lease(ns, lease)
                self.core.patch_node_status(NODE_NAME, {"status": {"conditions": self.node_status()["conditions"]}},
                                            _content_type=SMP)
            except Exception as exc:  # keep beating through apiserver hiccups
                print(f"heartbeat failed: {exc}", file=sys.stderr)
            time.sleep(10)

    # --- pods -------------------------------------------------------------------------------
    def watch_pods(self) -> None:
        """Watch the node's pods forever; each (re)started watch replays all current pods."""
        while True:
            try:
                for event in watch.Watch().stream(self.core.list_pod_for_all_namespaces, timeout_seconds=300,
                                                  field_selector=f"spec.nodeName={NODE_NAME}"):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.on_pod(event["raw_object"])
            except Exception as exc:
                print(f"pod watch failed: {exc}", file=sys.stderr)
                time.sleep(1)

    def on_pod(self, pod: Json) -> None:
        meta, uid = pod["metadata"], pod["metadata"]["uid"]
        with self.lock:
            if meta.get("deletionTimestamp"):
                if uid not in self.deleting:
                    self.deleting.add(uid)
                    threading.Thread(target=self.delete_pod, args=(pod,), daemon=True).start()
            elif uid not in self.started and pod.get("status", {}).get("phase", "Pending") == "Pending":
                self.started.add(uid)
                threading.Thread(target=self.run_pod, args=(pod,), daemon=True).start()

    def delete_pod(self, pod: Json) -> None:
        """Kill the pod's processes (SIGTERM, SIGKILL after the grace period), then remove the pod."""
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        procs = self.procs.get(meta["uid"], [])
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            for p in procs:
                if p.poll() is None:
                    self.killed.add(p.pid)
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + wait
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(0.5 if procs else 0)  # let run_pod report the terminated status first
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, pod: Json, status: Json) -> None:
        meta = pod["metadata"]
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status},
                                              _content_type=SMP)

    def run_pod(self, pod: Json) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        pod_dir = self.workdir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.core.patch_namespaced_pod(meta["name"], meta["namespace"],
                                           {"metadata": {"annotations": {DIR_ANNOTATION: str(pod_dir)}}},
                                           _content_type=SMP)
            volumes = self.materialize(pod, pod_dir)
            self.patch_status(pod, {"phase": "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                                    "startTime": _now()})
            for c in spec.get("initContainers", []):
                result = self.wait([self.start(pod, c, volumes, pod_dir)])[0]
                if result["state"]["terminated"]["exitCode"] != 0:
                    self.patch_status(pod, {"phase": "Failed", "initContainerStatuses": [result]})
                    return
            procs = [self.start(pod, c, volumes, pod_dir) for c in spec["containers"]]
            now = _now()
            self.patch_status(pod, {
                "phase": "Running",
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                               for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")],
                "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                       "containerID": f"local://{p.pid}", "ready": True, "started": True,
                                       "restartCount": 0, "state": {"running": {"startedAt": now}}}
                                      for c, (p, _) in zip(spec["containers"], procs, strict=True)]})
            results = self.wait(procs)
            failed = any(r["state"]["terminated"]["exitCode"] != 0 for r in results)
            self.patch_status(pod, {
                "phase": "Failed" if failed else "Succeeded",
                "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()}
                               for t in ("ContainersReady", "Ready")],
                "containerStatuses": results})
        except Exception as exc:
            print(f"pod {meta['namespace']}/{meta['name']} failed: {exc!r}", file=sys.stderr)
            self.patch_status(pod, {"phase": "Failed", "reason": "LocalRunnerError", "message": str(exc)[:1000]})

    def start(self, pod: Json, c: Json, volumes: dict[str, Path],
              pod_dir: Path) -> tuple[subprocess.Popen[bytes], Json]:
        """Start one container in its own mount namespace and process group."""
        env = self.container_env(pod, c)
        argv = [expand(a, env) for a in c.get("command", []) + c.get("args", [])]
        if not c.get("command"):
            raise ValueError(f"container {c['name']} has no command (the local runner ignores images)")
        term = pod_dir / f"{c['name']}.termination-log"
        term.write_bytes(b"")
        mounts = [(str(term), c.get("terminationMessagePath") or "/dev/termination-log", False)]
        for vm in c.get("volumeMounts", []):
            src = volumes[vm["name"]]
            if vm.get("subPath"):
                src = src / vm["subPath"]
                if not src.exists():
                    src.mkdir(parents=True)
            mounts.append((str(src), vm["mountPath"], bool(vm.get("readOnly"))))
        exec_spec = {"mounts": sorted(mounts, key=lambda m: m[1].count("/")), "argv": argv, "env": env,
                     "cwd": c.get("workingDir") or str(pod_dir)}
        made = self.make_mount_points(mounts)
        spec_path = pod_dir / f"{c['name']}.exec.json"
        spec_path.write_text(json.dumps(exec_spec))
        with open(pod_dir / f"{c['name']}.log", "ab") as log:
            popen = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
                                      "finetune_devcluster.localnode", "exec", str(spec_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=child_setup)
        with self.lock:
            self.procs.setdefault(pod["metadata"]["uid"], []).append(popen)
        return popen, {"container": c, "startedAt": _now(), "term": term, "log": pod_dir / f"{c['name']}.log",
                       "made": made}

    def make_mount_points(self, mounts: list[tuple[str, str, bool]]) -> list[Path]:
        """Create the missing mount points on the host (shared by concurrent containers)."""
        used = []
        with self.lock:
            for src, dst, _ in mounts:
                target = Path(dst)
                for path in [*reversed(target.parents), target]:
                    if path in self.created:
                        self.created[path] += 1
                    elif path.exists() or path.is_symlink():
                        continue
                    else:
                        if path == target and not Path(src).is_dir():
                            path.touch()
                        else:
                            path.mkdir()
                        self.created[path] = 1
                    used.append(path)
        return used

    def release_mount_points(self, used: list[Path]) -> None:
        """Remove the mount points this agent made once no running container uses them."""
        with self.lock:
            for path in reversed(used):
                self.created[path] -= 1
                if not self.created[path]:
                    del self.created[path]
                    try:
                        if path.is_dir():
                            path.rmdir()
                        else:
                            path.unlink()
                    except OSError as exc:
                        print(f"cannot remove mount point {path}: {exc}", file=sys.stderr)

    def wait(self, procs: list[tuple[subprocess.Popen[bytes], Json]]) -> list[Json]:
        """Wait for the containers and build their terminated container statuses."""
        results = []
        for p, info in procs:
            code = p.wait()
            self.release_mount_points(info["made"])
            c = info["container"]
            killed = p.pid in self.killed
            if code < 0:
                code = 128 - code
            reason = "Completed" if code == 0 else ("OOMKilled" if code == 137 and not killed else "Error")
            message = info["term"].read_bytes()[:4096].decode(errors="replace")
            if not message and code and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                message = "\n".join(info["log"].read_bytes()[-2048:].decode(errors="replace").splitlines()[-80:])
            terminated = {"exitCode": code, "reason": reason, "startedAt": info["startedAt"],
                          "finishedAt": _now(), "containerID": f"local://{p.pid}"}
            if message:
                terminated["message"] = message
            results.append({"name": c["name"], "image": c.get("image", ""), "imageID": "",
                            "containerID": f"local://{p.pid}", "ready": False, "started": False,
                            "restartCount": 0, "state": {"terminated": terminated}})
        return results

    # --- inputs -----------------------------------------------------------------------------
    def key_data(self, kind: str, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        """All keys of a ConfigMap or Secret as bytes ({} when optional and missing)."""
        read = self.core.read_namespaced_config_map if kind == "configMap" else self.core.read_namespaced_secret
        try:
            obj = _raw(read, name, ns)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise
        if kind == "configMap":
            return {k: v.encode() for k, v in (obj.get("data") or {}).items()} | {
                k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def field(self, pod: Json, path: str) -> str:
        """A downward-API fieldPath of the pod."""
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str(pod["metadata"].get(m.group(1), {}).get(m.group(2), ""))
        values = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
                  "metadata.uid": pod["metadata"]["uid"], "spec.nodeName": NODE_NAME,
                  "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                  "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
        return values[path]

    def write_source(self, pod: Json, dest: Path, kind: str, src: Json) -> None:
        """Write one volume source (configMap, secret, downwardAPI, serviceAccountToken) into dest."""
        ns = pod["metadata"]["namespace"]
        files: dict[str, bytes]
        if kind in ("configMap", "secret"):
            data = self.key_data(kind, ns, src.get("name") or src.get("secretName", ""), bool(src.get("optional")))
            items = src.get("items")
            files = {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data
        elif kind == "downwardAPI":
            files = {i["path"]: self.field(pod, i["fieldRef"]["fieldPath"]).encode() for i in src["items"]}
        elif kind == "serviceAccountToken":
            sa = pod["spec"].get("serviceAccountName", "default")
            request = {"spec": {"audiences": [src["audience"]] if src.get("audience") else None,
                                "expirationSeconds": src.get("expirationSeconds", 3607),
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                   "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}}}
            token = _raw(self.core.create_namespaced_service_account_token, sa, ns, request)
            files = {src["path"]: token["status"]["token"].encode()}
        else:
            raise ValueError(f"unsupported volume source {kind}")
        for rel, content in files.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(content)

    def materialize(self, pod: Json, pod_dir: Path) -> dict[str, Path]:
        """Create the host folder of every pod volume."""
        out: dict[str, Path] = {}
        ns = pod["metadata"]["namespace"]
        for v in pod["spec"].get("volumes", []):
            dest = pod_dir / "volumes" / v["name"]
            if "hostPath" in v:
                dest = Path(v["hostPath"]["path"])
            elif "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                pvc = _raw(self.core.read_namespaced_persistent_volume_claim, claim, ns)
                pv = _raw(self.core.read_persistent_volume, pvc["spec"]["volumeName"])
                if "hostPath" not in pv["spec"]:
                    raise ValueError(f"PV {pv['metadata']['name']} is not a hostPath volume")
                dest = Path(pv["spec"]["hostPath"]["path"])
            if not dest.exists():
                dest.mkdir(parents=True)
            if "projected" in v:
                for src in v["projected"]["sources"]:
                    for kind, body in src.items():
                        self.write_source(pod, dest, kind, body)
            elif "configMap" in v or "secret" in v or "downwardAPI" in v:
                kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in v)
                self.write_source(pod, dest, kind, v[kind])
            elif not {"emptyDir", "hostPath", "persistentVolumeClaim"} & v.keys():
                raise ValueError(f"volume {v['name']}: unsupported type {sorted(v)}")
            out[v["name"]] = dest
        return out

    def container_env(self, pod: Json, c: Json) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
               "HOSTNAME": pod["metadata"]["name"], "KUBERNETES_SERVICE_HOST": self.api_host,
               "KUBERNETES_SERVICE_PORT": self.api_port, "KUBERNETES_SERVICE_PORT_HTTPS": self.api_port}
        for src in c.get("envFrom", []):
            kind = "configMap" if "configMapRef" in src else "secret"
            ref = src.get("configMapRef") or src["secretRef"]
            for k, v in self.key_data(kind, ns, ref["name"], bool(ref.get("optional"))).items():
                env[src.get("prefix", "") + k] = v.decode(errors="replace")
        for e in c.get("env", []):
            vf = e.get("valueFrom")
            if vf is None:
                env[e["name"]] = expand(e.get("value", ""), env)
            elif "fieldRef" in vf:
                env[e["name"]] = self.field(pod, vf["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                kind = "configMap" if "configMapKeyRef" in vf else "secret"
                ref = vf[f"{kind}KeyRef"]
                data = self.key_data(kind, ns, ref["name"], bool(ref.get("optional")))
                if ref["key"] in data:
                    env[e["name"]] = data[ref["key"]].decode(errors="replace")
                elif not ref.get("optional"):
                    raise ValueError(f"{kind} {ref['name']} has no key {ref['key']}")
        return env


def exec_in_namespace(spec_path: str) -> None:
    """Inside `unshare --mount`: bind-mount the volumes, chdir, exec the command (same pid)."""
    spec = json.loads(Path(spec_path).read_text())
    libc = ctypes.CDLL(None, use_errno=True)
    # Hold every source open first: a mount (say an emptyDir on /tmp) may hide a later source's path.
    sources = [os.open(src, os.O_PATH) for src, _, _ in spec["mounts"]]
    for fd, (src, dst, read_only) in zip(sources, spec["mounts"], strict=True):  # the agent made the mount points
        flags = [MS_BIND | MS_REC] + ([MS_REMOUNT | MS_BIND | MS_RDONLY] if read_only else [])
        for i, flag in enumerate(flags):
            if libc.mount(f"/proc/self/fd/{fd}".encode() if i == 0 else None, dst.encode(), None, flag, None) != 0:
                raise OSError(ctypes.get_errno(), f"mount {src} on {dst}: {os.strerror(ctypes.get_errno())}")
    for fd in sources:
        os.close(fd)
    os.makedirs(spec["cwd"], exist_ok=True)
    os.chdir(spec["cwd"])
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    ex = sub.add_parser("exec", help="internal: run one container (inside unshare)")
    ex.add_argument("spec")
    parser.add_argument("--kubeconfig", required=False)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/finetune-local-runner"))
    parser.add_argument("--fake-gpus", type=int, default=1, help="nvidia.com/gpu capacity to advertise")
    args = parser.parse_args(argv)
    if args.cmd == "exec":
        exec_in_namespace(args.spec)
        return
    if not args.kubeconfig:
        parser.error("--kubeconfig is required")
    agent = Agent(args.kubeconfig, args.workdir.resolve(), args.fake_gpus)
    agent.register()
    threading.Thread(target=agent.heartbeat, daemon=True).start()

    def shutdown(signum: int, frame: object) -> None:
        for procs in list(agent.procs.values()):
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    agent.watch_pods()


if __name__ == "__main__":
    main()
