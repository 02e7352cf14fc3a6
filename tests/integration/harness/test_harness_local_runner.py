"""The local-runner node really runs pod commands with their volumes, env and service account."""

from __future__ import annotations

import json
from pathlib import Path

from harness_manifests import get_json, job_condition

LOCAL = {"finetune.dev/local-runner": "true"}


def _job(name: str, container: dict, volumes: list[dict] | None = None) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "nodeSelector": LOCAL, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "ignored", **container}], "volumes": volumes or []}}},
    })


def _terminated(kubectl, namespace: str, job: str) -> dict | None:
    pods = get_json(kubectl, "pods", "-l", f"job-name={job}", namespace=namespace)["items"]
    statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
    return statuses[0]["state"].get("terminated") if statuses else None


def test_local_runner_runs_command_with_volumes(kubectl, namespace, local_runner, wait_for, tmp_path) -> None:
    host_dir = tmp_path / "pv"
    host_dir.mkdir()
    pv_name = f"pv-{namespace}"
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "hostPath": {"path": str(host_dir)},
                 "claimRef": {"namespace": namespace, "name": "out"}}}))
    kubectl("create", "-f", "-", namespace=namespace, input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "out"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    kubectl("create", "configmap", "cfg", "--from-literal=key=hello from configmap", "--from-literal=other=x",
            namespace=namespace)
    kubectl("create", "secret", "generic", "creds", "--from-literal=token=s3cret", namespace=namespace)
    container = {
        "command": ["sh", "-c"],
        "args": ["cat /etc/cfg/key > /out/result; ls /etc/cfg > /out/cfg-files; echo \"$POD_NAME\" > /out/pod-name; "
                 "echo \"$TOKEN\" > /scratch/t && cp /scratch/t /out/token; "
                 "echo done > /dev/termination-log; exit 3"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
                         {"name": "out", "mountPath": "/out"}, {"name": "scratch", "mountPath": "/scratch"}],
    }
    volumes = [{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "key", "path": "key"}]}},
               {"name": "out", "persistentVolumeClaim": {"claimName": "out"}},
               {"name": "scratch", "emptyDir": {}}]
    try:
        kubectl("create", "-f", "-", input=_job("runs", container, volumes), namespace=namespace)
        terminated = wait_for(lambda: _terminated(kubectl, namespace, "runs"), 60, "the container to end", namespace)
        assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
        assert terminated["message"] == "done\n"
        assert (host_dir / "result").read_text() == "hello from configmap"
        assert (host_dir / "cfg-files").read_text() == "key\n"  # only the listed item
        assert (host_dir / "token").read_text() == "s3cret\n"
        pod = get_json(kubectl, "pods", "-l", "job-name=runs", namespace=namespace)["items"][0]
        assert (host_dir / "pod-name").read_text().strip() == pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == local_runner and pod["status"]["phase"] == "Failed"
        wait_for(lambda: job_condition(get_json(kubectl, "job/runs", namespace=namespace), "Failed"), 30,
                 "job/runs to fail", namespace)
    finally:
        kubectl("delete", "pv", pv_name, "--wait=false", check=False)


def test_local_runner_in_cluster_api_access(kubectl, namespace, local_runner, wait_for) -> None:
    script = ("from kubernetes import client, config; config.load_incluster_config(); "
              "v = client.VersionApi().get_code().git_version; "
              "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read(); "
              "open('/dev/termination-log', 'w').write(v + ' ' + ns)")
    kubectl("create", "-f", "-", input=_job("incluster", {"command": ["python", "-c", script]}), namespace=namespace)
    terminated = wait_for(lambda: _terminated(kubectl, namespace, "incluster"), 60, "the container to end", namespace)
    assert terminated["exitCode"] == 0, terminated
    assert terminated["message"] == f"v1.35.4 {namespace}"
    wait_for(lambda: job_condition(get_json(kubectl, "job/incluster", namespace=namespace), "Complete"), 30,
             "job/incluster to complete", namespace)


def test_local_runner_kills_deleted_pod(kubectl, namespace, local_runner, wait_for) -> None:
    kubectl("create", "-f", "-", input=_job("sleeper", {"command": ["sleep", "300"]}), namespace=namespace)
    pod = wait_for(lambda: (p := get_json(kubectl, "pods", "-l", "job-name=sleeper", namespace=namespace)["items"])
                   and p[0]["status"].get("phase") == "Running" and p[0], 30, "the sleeper to run", namespace)
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
    assert Path(f"/proc/{pid}").exists()
    kubectl("delete", "job/sleeper", "--cascade=foreground", "--wait=false", namespace=namespace)
    wait_for(lambda: not get_json(kubectl, "pods", "-l", "job-name=sleeper", namespace=namespace)["items"], 30,
             "the pod to be removed", namespace)
    assert not Path(f"/proc/{pid}").exists()
