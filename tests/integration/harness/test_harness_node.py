"""The dev node is a real one: kubelet + containerd + runc run the pod's image with its volumes,
env, service account, security context, memory limit and device-plugin GPUs; pods resolve cluster
names (CoreDNS), reach the apiserver through the `kubernetes` Service and nothing outside this
machine."""

from __future__ import annotations

import json
import subprocess

from finetune_devcluster.node import BUSYBOX_IMAGE, GPU_PRODUCT, NODE_LABEL
from support.harness import get_json, job_condition

ON_NODE = {NODE_LABEL: "true"}
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _job(name: str, script: str, volumes: list[dict] | None = None, **container: object) -> str:
    """A busybox Job on the dev node running `sh -c script` (restricted security context)."""
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": ON_NODE,
                        "terminationGracePeriodSeconds": 2,
                        "securityContext": {"fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "main",
                                "image": BUSYBOX_IMAGE,
                                "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script],
                                "securityContext": RESTRICTED,
                                **container,
                            }
                        ],
                        "volumes": volumes or [],
                    }
                },
            },
        }
    )


def _pod(kubectl, namespace: str, job: str) -> dict | None:
    pods = get_json(kubectl, "pods", "-l", f"job-name={job}", namespace=namespace)["items"]
    return pods[0] if pods else None


def _terminated(kubectl, namespace: str, job: str) -> dict | None:
    statuses = ((_pod(kubectl, namespace, job) or {}).get("status") or {}).get("containerStatuses")
    return statuses[0]["state"].get("terminated") if statuses else None


def _restricted(kubectl, namespace: str) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")


def test_node_runs_image_with_volumes_env_and_restricted_security(
    cluster, kubectl, namespace, dev_node, wait_for, tmp_path
) -> None:
    _restricted(kubectl, namespace)
    host_dir = tmp_path / "pv"
    pv = cluster.local_claim(namespace, "out", host_dir, size="1Gi")
    kubectl(
        "create",
        "configmap",
        "cfg",
        "--from-literal=key=hello from configmap",
        "--from-literal=other=x",
        namespace=namespace,
    )
    kubectl("create", "secret", "generic", "creds", "--from-literal=token=s3cret", namespace=namespace)
    script = (
        'cat /etc/cfg/key > /out/result; ls /etc/cfg > /out/cfg-files; echo "$POD_NAME" > /out/pod-name; '
        'echo "$TOKEN" > /scratch/t && cp /scratch/t /out/token; id > /out/id; '
        "touch /not-writable 2>> /out/rootfs; cat /proc/1/cmdline | tr '\\0' ' ' > /out/pid1; "
        "echo done > /dev/termination-log; exit 3"
    )
    container = {
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
            {"name": "out", "mountPath": "/out"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "key", "path": "key"}]}},
        {"name": "out", "persistentVolumeClaim": {"claimName": "out"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    try:
        kubectl("create", "-f", "-", input=_job("runs", script, volumes, **container), namespace=namespace)
        terminated = wait_for(lambda: _terminated(kubectl, namespace, "runs"), 90, "the container to end", namespace)
        assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
        assert terminated["message"] == "done\n"
        assert terminated["containerID"].startswith("containerd://")
        assert (host_dir / "result").read_text() == "hello from configmap"
        assert (host_dir / "cfg-files").read_text() == "key\n"  # only the listed item
        assert (host_dir / "token").read_text() == "s3cret\n"
        # uid 1000, and the claim was handed to the fsGroup so that uid could write it
        assert (host_dir / "id").read_text().startswith("uid=1000 gid=1000 groups=1000")
        assert (host_dir / "result").stat().st_uid == 1000
        assert "Read-only file system" in (host_dir / "rootfs").read_text()
        assert (host_dir / "pid1").read_text().startswith("sh -c")  # the container has its own PID namespace
        wait_for(
            lambda: job_condition(get_json(kubectl, "job/runs", namespace=namespace), "Failed"),
            30,
            "job/runs to fail",
            namespace,
        )
        pod = wait_for(
            lambda: (p := _pod(kubectl, namespace, "runs")) and p["status"]["phase"] == "Failed" and p,
            30,
            "the pod to be Failed",
            namespace,
        )
        assert (host_dir / "pod-name").read_text().strip() == pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == dev_node
        assert pod["status"]["podIP"].startswith("10.214.")
    finally:
        kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_pod_reaches_apiserver_through_dns_and_the_service_and_nothing_outside(
    kubectl, namespace, dev_node, wait_for
) -> None:
    # The cluster DNS (CoreDNS) resolves the `kubernetes` Service; busybox's nc opens a TCP
    # connection to it (kube-proxy's DNAT to the apiserver on the host end of the node's link),
    # then to this machine's gateway, which no route leads to. (TLS to the apiserver through the
    # Service: the operator and trainer pods of tests/e2e.)
    script = (
        "echo log line from $HOSTNAME; "
        "echo \"dns: $(nslookup kubernetes.default.svc.cluster.local | awk '/^Address: / {print $2}')\" "
        "> /dev/termination-log; "
        "nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null; "
        'echo "service: $?" >> /dev/termination-log; '
        'nc -w 5 192.0.2.1 80 </dev/null 2>> /dev/termination-log; echo "outside: $?" >> /dev/termination-log'
    )
    kubectl("create", "-f", "-", input=_job("reach", script), namespace=namespace)
    terminated = wait_for(lambda: _terminated(kubectl, namespace, "reach"), 90, "the container to end", namespace)
    lines = terminated["message"].splitlines()
    assert lines[:2] == ["dns: 10.0.0.1", "service: 0"], terminated
    assert "Network is unreachable" in lines[2] and lines[3] == "outside: 1", terminated
    # the apiserver reaches the kubelet (TLS both ways, the kubelet authorizing it) for logs
    pod = _pod(kubectl, namespace, "reach")
    assert kubectl("logs", pod["metadata"]["name"], namespace=namespace).stdout.startswith(
        f"log line from {pod['metadata']['name']}\n"
    )


def test_gpu_request_is_allocated_by_the_device_plugin(kubectl, namespace, dev_node, wait_for) -> None:
    node = get_json(kubectl, "node", dev_node)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT
    job = _job(
        "gpu", 'echo "$NVIDIA_VISIBLE_DEVICES" > /dev/termination-log', resources={"limits": {"nvidia.com/gpu": "1"}}
    )
    kubectl("create", "-f", "-", input=job, namespace=namespace)
    terminated = wait_for(lambda: _terminated(kubectl, namespace, "gpu"), 90, "the GPU container to end", namespace)
    assert (terminated["exitCode"], terminated["message"]) == (0, "finetune-fake-gpu-0\n"), terminated


def test_memory_limit_is_enforced_by_the_kernel(kubectl, namespace, dev_node, wait_for) -> None:
    job = _job(
        "oom", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived", resources={"limits": {"memory": "32Mi"}}
    )
    kubectl("create", "-f", "-", input=job, namespace=namespace)
    terminated = wait_for(lambda: _terminated(kubectl, namespace, "oom"), 90, "the OOM kill", namespace)
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled"), terminated


def test_deleting_a_pod_kills_its_container(cluster, kubectl, namespace, dev_node, wait_for) -> None:
    kubectl("create", "-f", "-", input=_job("sleeper", "sleep 300"), namespace=namespace)
    pod = wait_for(
        lambda: (p := _pod(kubectl, namespace, "sleeper")) and p["status"].get("phase") == "Running" and p,
        60,
        "the sleeper to run",
        namespace,
    )
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    assert json.loads(cluster.node.crictl("inspect", container_id))["status"]["state"] == "CONTAINER_RUNNING"
    kubectl("delete", "job/sleeper", "--cascade=foreground", "--wait=false", namespace=namespace)
    wait_for(lambda: _pod(kubectl, namespace, "sleeper") is None, 60, "the pod to be removed", namespace)

    def container_gone() -> bool:
        done = subprocess.run(cluster.node.ctr("containers", "info", container_id), capture_output=True, text=True)
        return done.returncode != 0 and "not found" in done.stderr

    wait_for(container_gone, 60, "containerd to remove the container", namespace)
