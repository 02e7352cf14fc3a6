"""Manifests shared by the harness tests."""

from __future__ import annotations

import json
from typing import Any

from finetune_devcluster import GPU_TOLERATION, KWOK_TOLERATION


def gpu_job(
    name: str, gpus: int = 1, annotations: dict[str, str] | None = None, node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Job whose single pod requests `gpus` nvidia.com/gpu, tolerates the GPU taint and runs on
    kwok nodes only (`type: kwok`, which the real dev node does not have)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": [GPU_TOLERATION, KWOK_TOLERATION],
                    "nodeSelector": {"type": "kwok", **(node_selector or {})},
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "example.invalid/trainer:1",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def job_condition(job: dict[str, Any], kind: str) -> bool:
    """True when the Job (raw JSON) has condition `kind` (Complete/Failed) set to True."""
    return any(c["type"] == kind and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))


def get_json(kubectl: Any, *args: str, namespace: str | None = None) -> dict[str, Any] | None:
    """`kubectl get ARGS -o json` parsed, or None when the object does not exist."""
    result = kubectl("get", *args, "-o", "json", namespace=namespace, check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return json.loads(result.stdout)
