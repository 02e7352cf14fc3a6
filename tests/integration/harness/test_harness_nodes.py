"""Two real nodes: `dev-node` and `dev-node-2`, each its own kubelet, containerd, kube-proxy and pod
range in its own namespaces, routed through this machine. Pods on different nodes reach each other
by pod IP and by their stable names under a headless Service (the cluster DNS on the first node
answers the second's pods), reach a Service whose endpoint is on the other node, and share a
ReadWriteMany claim; an image loaded into the cluster lands in both nodes' containerd. This is what
a FineTuneJob of `resources.nodes: 2` needs: an Indexed Job, one pod per node, meeting at pod 0."""

from __future__ import annotations

import json
from pathlib import Path

from finetune_devcluster import oci
from finetune_devcluster.node import BUSYBOX_IMAGE, NODE_LABEL, REAL_NODE_LABEL
from support.harness import get_json, job_condition

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Each pod serves its hostname on :8080, asks the other pod by its stable name and the `first`
# Service (pod 0) for theirs, reads the file the other pod wrote to the shared claim, and waits
# (bounded) until the other pod is done asking before it exits.
PEER_SCRIPT = """
me=$JOB_COMPLETION_INDEX; other=$((1 - me))
hostname > /shared/from-$me
nc -ll -p 8080 -e hostname &
tries=0
until answer=$(nc -w 2 peers-$other.peers 8080 </dev/null) && [ -n "$answer" ]; do
  tries=$((tries + 1)); [ $tries -ge 90 ] && break; sleep 1
done
echo "peer: $answer" > /dev/termination-log
echo "service: $(nc -w 2 first 8080 </dev/null)" >> /dev/termination-log
echo "file: $(cat /shared/from-$other)" >> /dev/termination-log
echo "hosts: $(grep -w "$(hostname)" /etc/hosts)" >> /dev/termination-log
touch /shared/done-$me
tries=0
until [ -e /shared/done-$other ] || [ $tries -ge 90 ]; do tries=$((tries + 1)); sleep 1; done
"""


def _indexed_job(name: str, pods: int, script: str, volumes: list[dict] | None = None) -> dict:
    """An Indexed Job of `pods` busybox pods on the real nodes, one per node (a required pod
    anti-affinity on the hostname), with stable names under the headless Service `name`."""
    selector = {"job-name": name}
    pod_spec = {
        "restartPolicy": "Never",
        "subdomain": name,
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        },
        "terminationGracePeriodSeconds": 2,
        "securityContext": {"fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "securityContext": RESTRICTED,
                "volumeMounts": [{"name": v["name"], "mountPath": f"/{v['name']}"} for v in volumes or []],
            }
        ],
        "volumes": volumes or [],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": pods,
            "parallelism": pods,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": selector}, "spec": pod_spec},
        },
    }


def _peers() -> list[dict]:
    """Two pods, one per real node, with a headless Service for their names, a ClusterIP Service
    `first` in front of pod 0, and a shared claim."""
    selector = {"job-name": "peers"}
    port = [{"port": 8080, "targetPort": 8080}]
    shared = {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "peers"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector, "ports": port},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "first"},
            "spec": {"selector": {**selector, "batch.kubernetes.io/job-completion-index": "0"}, "ports": port},
        },
        _indexed_job("peers", 2, PEER_SCRIPT, [shared]),
    ]


def test_two_real_nodes_each_with_its_own_network(kubectl, dev_nodes_2) -> None:
    first, second = (get_json(kubectl, "node", name) for name in dev_nodes_2)
    assert dev_nodes_2 == ["dev-node", "dev-node-2"]
    assert (first["metadata"]["labels"][NODE_LABEL], second["metadata"]["labels"][NODE_LABEL]) == ("true", "extra")
    assert first["metadata"]["labels"][REAL_NODE_LABEL] == second["metadata"]["labels"][REAL_NODE_LABEL] == "true"
    ips = [next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP") for n in (first, second)]
    assert ips[0] != ips[1] and all(ip.startswith("10.213.") for ip in ips)
    assert all(
        c["status"] == "True" for n in (first, second) for c in n["status"]["conditions"] if c["type"] == "Ready"
    )
    assert first["status"]["allocatable"]["nvidia.com/gpu"] == second["status"]["allocatable"]["nvidia.com/gpu"] == "1"


def test_pods_on_two_nodes_reach_each_other_by_name_and_service_and_share_a_claim(
    cluster, kubectl, namespace, dev_nodes_2, wait_for, tmp_path
) -> None:
    shared = tmp_path / "shared"
    pv = cluster.shared_claim(namespace, "shared", shared, size="1Gi")
    try:
        kubectl("create", "-f", "-", input="\n---\n".join(json.dumps(o) for o in _peers()), namespace=namespace)
        job = wait_for(
            lambda: (
                (j := get_json(kubectl, "job/peers", namespace=namespace))
                and (job_condition(j, "Complete") or job_condition(j, "Failed"))
                and j
            ),
            180,
            "job/peers to finish",
            namespace,
        )
        pods = sorted(
            get_json(kubectl, "pods", "-l", "job-name=peers", namespace=namespace)["items"],
            key=lambda p: p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
        )
        messages = [p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] for p in pods]
        assert job_condition(job, "Complete"), messages
        assert sorted(p["spec"]["nodeName"] for p in pods) == dev_nodes_2
        ranges = {p["status"]["podIP"].rsplit(".", 1)[0] for p in pods}
        assert len(ranges) == 2 and all(r.startswith("10.214.") for r in ranges)  # one pod range per node
        for index, (pod, message) in enumerate(zip(pods, messages, strict=True)):
            other = f"peers-{1 - index}"
            assert message.splitlines()[:3] == [f"peer: {other}", "service: peers-0", f"file: {other}"], message
            # The pod's own name first, fully qualified: what Python's socket.getfqdn() answers, and
            # the address by which the trainer's rendezvous orders the nodes (pod 0 first).
            fqdn = f"peers-{index}.peers.{namespace}.svc.cluster.local"
            assert message.splitlines()[3].split() == ["hosts:", pod["status"]["podIP"], fqdn, f"peers-{index}"]
        assert (shared / "from-0").read_text() == "peers-0\n" and (shared / "from-1").read_text() == "peers-1\n"
        assert (shared / "from-1").stat().st_uid == 1000
    finally:
        kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_an_image_loaded_into_the_cluster_lands_on_every_real_node(cluster, dev_nodes_2, tmp_path: Path) -> None:
    archive = tmp_path / "hello.tar"
    ref = "localhost/finetune-devcluster/hello:two-nodes"
    digest = oci.write_archive(archive, ref, [oci.Entry("hello", Path(__file__))], ["/hello"])
    assert cluster.load_image(archive) == ref
    assert [node.image_digest(ref) for node in cluster.started_nodes] == [digest, digest]


def test_more_pods_than_real_nodes_leave_one_pending_with_the_schedulers_message(
    kubectl, namespace, dev_nodes_2, wait_for
) -> None:
    kubectl("create", "-f", "-", input=json.dumps(_indexed_job("three", 3, "sleep 120")), namespace=namespace)

    def placed() -> tuple[list[str], list[dict]] | None:
        """(the nodes of the scheduled pods, the PodScheduled conditions of the others) once all
        three pods have been through the scheduler."""
        pods = get_json(kubectl, "pods", "-l", "job-name=three", namespace=namespace)["items"]
        nodes = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
        refused = [
            c
            for p in pods
            for c in p["status"].get("conditions", [])
            if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
        ]
        return (sorted(nodes), refused) if len(nodes) + len(refused) == 3 else None

    nodes, refused = wait_for(placed, 60, "the pods of job/three to be scheduled or refused", namespace)
    assert nodes == dev_nodes_2 and len(refused) == 1, (nodes, refused)
    assert "didn't match pod anti-affinity rules" in refused[0]["message"], refused
    kubectl("delete", "job/three", "--wait=false", namespace=namespace)
