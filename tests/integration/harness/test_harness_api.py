"""The control plane is a real one: CRD validation, garbage collection, Pod Security admission."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.harness import get_json, gpu_job

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.finetune.dev"},
    "spec": {
        "group": "test.finetune.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_schema_rejects_bad_object(kubectl, namespace, wait_for) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    kubectl("wait", "--for=condition=Established", "crd/widgets.test.finetune.dev", "--timeout=30s")
    good = {
        "apiVersion": "test.finetune.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "good"},
        "spec": {"size": 2, "color": "red"},
    }
    # The discovery cache of a fresh CRD can lag a moment behind Established.
    wait_for(
        lambda: kubectl("apply", "-f", "-", input=json.dumps(good), namespace=namespace, check=False).returncode == 0,
        30,
        "the Widget API to be served",
    )
    bad = {**good, "metadata": {"name": "bad"}, "spec": {"size": "big", "color": "green"}}
    result = kubectl("apply", "-f", "-", input=json.dumps(bad), namespace=namespace, check=False)
    assert result.returncode != 0
    assert 'The Widget "bad" is invalid' in result.stderr
    assert 'spec.size: Invalid value: "string": spec.size in body must be of type integer' in result.stderr
    assert 'spec.color: Unsupported value: "green"' in result.stderr


def test_deleting_owner_garbage_collects_job(kubectl, kube_api, namespace, wait_for) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "b"}})
    job = gpu_job("owned", annotations={"sim.finetune.dev/duration": "10m"})
    job["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    kubectl("create", "-f", "-", input=json.dumps(job), namespace=namespace)
    wait_for(
        lambda: get_json(kubectl, "pods", "-l", "job-name=owned", namespace=namespace)["items"],
        30,
        "the owned Job's pod",
        namespace,
    )
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: get_json(kubectl, "job/owned", namespace=namespace) is None,
        60,
        "the garbage collector to delete job/owned",
        namespace,
    )
    wait_for(
        lambda: not get_json(kubectl, "pods", "-l", "job-name=owned", namespace=namespace)["items"],
        60,
        "the Job's pods to be gone",
        namespace,
    )


def test_restricted_pod_security_rejects_privileged_pod(kube_api, namespace) -> None:
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        _content_type="application/merge-patch+json",
    )
    pod = {
        "metadata": {"name": "root"},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "command": ["true"], "securityContext": {"privileged": True}}
            ]
        },
    }
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, pod)
    assert info.value.status == 403
    message = json.loads(info.value.body)["message"]
    assert message.startswith('pods "root" is forbidden: violates PodSecurity "restricted:latest": privileged')
