"""Kubeconfigs for ServiceAccounts, so dev processes (the operator) run with their own RBAC, not as admin."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client


def service_account_kubeconfig(
    api: client.ApiClient,
    admin_kubeconfig: Path,
    namespace: str,
    service_account: str,
    path: Path,
    duration_seconds: int = 7200,
) -> Path:
    """Write a kubeconfig at ``path`` that authenticates as ``namespace/service_account`` (TokenRequest token)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=duration_seconds)
    )
    status = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, request).status
    if status is None:
        raise RuntimeError(f"the TokenRequest for {namespace}/{service_account} returned no token")
    token = status.token
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": service_account,
        "clusters": [{"name": "dev", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {"name": service_account, "context": {"cluster": "dev", "user": service_account, "namespace": namespace}}
        ],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
