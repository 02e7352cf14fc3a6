"""The download servers are reachable from pods on the real node (they listen on the host end of the
node's link), and the CA that signed their certificate reaches every namespace as the ConfigMap
`kube-root-ca.crt`: what a fetch container mounts and names in FINETUNE_CA_BUNDLE."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

from finetune_devcluster.node import BUSYBOX_IMAGE, NODE_LABEL
from support.harness import get_json


def _pod(name: str, script: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {NODE_LABEL: "true"},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "env": [{"name": "FINETUNE_CA_BUNDLE", "value": "/etc/finetune/ca/ca.crt"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "ca", "mountPath": "/etc/finetune/ca", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "ca", "configMap": {"name": "kube-root-ca.crt"}}],
        },
    }


def test_pods_on_the_node_reach_every_server_and_get_their_ca(
    cluster, kubectl, namespace, dev_node, wait_for, object_store, https_files, hub
):
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    urls = [object_store.url, object_store.cutoff_url, https_files.url, hub.url]
    checks = " && ".join(
        f"nc -w 5 {u.hostname} {u.port} </dev/null" for u in (urllib.parse.urlsplit(url) for url in urls)
    )
    script = f'{checks} && cat "$FINETUNE_CA_BUNDLE" > /dev/termination-log'
    kubectl("create", "-f", "-", input=json.dumps(_pod("probe", script)), namespace=namespace)

    def ended() -> dict | None:
        pod = get_json(kubectl, "pod/probe", namespace=namespace) or {}
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return statuses[0]["state"].get("terminated") if statuses else None

    terminated = wait_for(ended, 90, "the probe pod to end", namespace, objects=("pods",))
    assert terminated["exitCode"] == 0, terminated
    assert terminated["message"] == object_store.ca.read_text()
    issuer = subprocess.run(
        ["openssl", "verify", "-CAfile", str(object_store.ca), str(object_store.cert)], capture_output=True, text=True
    )
    assert issuer.stdout.strip() == f"{object_store.cert}: OK"
    assert all(urllib.parse.urlsplit(u).hostname == cluster.node.host_ip for u in urls)
