"""The dev cluster's OCI registry (the CNCF distribution registry, TLS from the cluster CA) serves
images the real node pulls: containerd trusts its CA through hosts.toml, nothing else is
configured. A small image is pushed through the registry's HTTP API (what BuildKit and helm speak)
and a pod runs it; an image the registry lacks fails with the registry's answer, not a TLS error;
the imported image of the same digest still runs under its own name, unpulled."""

from __future__ import annotations

import hashlib
import json
import ssl
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from finetune_devcluster.node import BUSYBOX_IMAGE, NODE_LABEL
from finetune_devcluster.registry import Registry
from support.harness import get_json

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def push_archive(registry: Registry, archive: Path, repository: str, tag: str) -> str:
    """Push the single image of an OCI layout archive (blobs, then the manifest); its digest."""
    ctx = ssl.create_default_context(cafile=str(registry.ca_file))
    base = f"https://{registry.host}/v2/{repository}"
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    index = json.loads(files["index.json"])
    digest = index["manifests"][0]["digest"]
    manifest = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    for blob in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
        data = files[f"blobs/sha256/{blob['digest'].removeprefix('sha256:')}"]
        start = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(start, context=ctx, timeout=30) as resp:
            location = resp.headers["Location"]
        url = f"https://{registry.host}{location}" if location.startswith("/") else location
        sep = "&" if "?" in url else "?"
        put = urllib.request.Request(f"{url}{sep}digest={blob['digest']}", data=data, method="PUT")
        put.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(put, context=ctx, timeout=30).close()
    put = urllib.request.Request(f"{base}/manifests/{tag}", data=manifest, method="PUT")
    put.add_header("Content-Type", MANIFEST_TYPE)
    with urllib.request.urlopen(put, context=ctx, timeout=30) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
    assert hashlib.sha256(manifest).hexdigest() == digest.removeprefix("sha256:")
    return digest


def pod(name: str, image: str, pull: str = "Always") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {NODE_LABEL: "true"},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": image, "imagePullPolicy": pull, "command": ["sh", "-c", "echo pulled"]}
            ],
        },
    }


def test_the_node_pulls_from_the_registry_over_tls(cluster, dev_node, registry, kubectl, namespace, wait_for):
    digest = push_archive(registry, cluster.node.dir / "images" / "busybox.tar", "harness/busybox", "1")
    kubectl(
        "apply", "-f", "-", input=json.dumps(pod("pulled", f"{registry.host}/harness/busybox:1")), namespace=namespace
    )
    kubectl(
        "apply", "-f", "-", input=json.dumps(pod("absent", f"{registry.host}/harness/absent:1")), namespace=namespace
    )

    def phase(name: str) -> dict[str, Any]:
        return get_json(kubectl, "pod", name, namespace=namespace)

    done = wait_for(lambda: phase("pulled")["status"].get("phase") == "Succeeded" and phase("pulled"), 120, "pulled")
    assert done["status"]["containerStatuses"][0]["imageID"].endswith(digest)
    assert kubectl("logs", "pulled", namespace=namespace).stdout == "pulled\n"
    log = registry.log_path.read_text()
    node_requests = [line for line in log.splitlines() if cluster.node.node_ip in line]
    assert any("/v2/harness/busybox/manifests/1" in line for line in node_requests), node_requests[-5:]

    def refused() -> str:
        waiting = (phase("absent")["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
        return waiting.get("message", "") if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else ""

    message = wait_for(refused, 120, "absent image refused", namespace=namespace)
    assert "not found" in message and "x509" not in message, message

    # The imported busybox has the digest the kubelet just pulled under the registry's name; its
    # imported name still starts with no pull (there is no registry behind localhost/): the node's
    # kubelet exempts the imported images from Kubernetes 1.35's re-pull check (KEP-2535).
    imported = pod("imported", BUSYBOX_IMAGE, pull="IfNotPresent")
    kubectl("apply", "-f", "-", input=json.dumps(imported), namespace=namespace)

    def outcome() -> str:
        status = phase("imported")["status"]
        waiting = (status.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            return f"{waiting['reason']}: {waiting.get('message')}"
        return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else ""

    assert wait_for(outcome, 120, "imported busybox ran or failed to pull") == "Succeeded"
    assert kubectl("logs", "imported", namespace=namespace).stdout == "pulled\n"
