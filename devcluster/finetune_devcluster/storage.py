"""Claims for the dev cluster's pods: a PersistentVolume on a directory of this machine, bound to a
PersistentVolumeClaim of that name, pre-bound (no provisioner runs here).

* `local` (ReadWriteOnce): a local volume on the first real node. The kubelet hands it to the
  pod's fsGroup (group-owned, setgid), so a non-root trainer writes to it.
* `shared` (ReadWriteMany): a hostPath volume with no node affinity. Every real node is a set of
  namespaces on this one machine and sees the same directory, so pods on different nodes mount it
  read-write at once, as they would an NFS or CephFS claim. The kubelet does not hand a hostPath
  volume to the fsGroup: the directory is made the trainer's (uid and gid 1000, setgid) here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from .node import node_name

TRAINER_UID = 1000


def local_volume(host_dir: Path) -> dict[str, Any]:
    """The spec of a `local` volume on the first real node (ReadWriteOnce)."""
    on_first_node = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name(1)]}
    return {
        "accessModes": ["ReadWriteOnce"],
        "local": {"path": str(host_dir)},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [on_first_node]}]}},
    }


def shared_volume(host_dir: Path) -> dict[str, Any]:
    """The spec of a hostPath volume every real node mounts read-write (ReadWriteMany)."""
    os.chown(host_dir, TRAINER_UID, TRAINER_UID)
    host_dir.chmod(0o2775)
    return {"accessModes": ["ReadWriteMany"], "hostPath": {"path": str(host_dir), "type": "Directory"}}


def bind_claim(
    api: client.ApiClient, namespace: str, name: str, volume: dict[str, Any], size: str, timeout: float
) -> str:
    """Create the PersistentVolume `<namespace>-<name>` with `volume` (its accessModes and source)
    and the claim `name` bound to it; return the PV's name once the claim is Bound."""
    pv = f"{namespace}-{name}"
    spec = {
        "capacity": {"storage": size},
        "storageClassName": "",
        "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": namespace, "name": name},
        **volume,
    }
    claim_spec = {
        "accessModes": volume["accessModes"],
        "storageClassName": "",
        "volumeName": pv,
        "resources": {"requests": {"storage": size}},
    }
    core = client.CoreV1Api(api)
    core.create_persistent_volume(
        client.V1PersistentVolume.model_validate(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"finetune.dev/claim-namespace": namespace}},
                "spec": spec,
            }
        )
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim.model_validate(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": claim_spec}
        ),
    )
    deadline = time.monotonic() + timeout
    while _claim_phase(core, namespace, name) != "Bound":
        if time.monotonic() > deadline:
            raise TimeoutError(f"claim {namespace}/{name} not Bound after {timeout}s")
        time.sleep(0.2)
    return pv


def _claim_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    status = core.read_namespaced_persistent_volume_claim(name, namespace).status
    return status.phase if status else None
