"""Operator settings: CLI flags, each with an environment-variable default (``FINETUNE_OPERATOR_*``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, overload

DEFAULT_TRAINER_IMAGE = "ghcr.io/finetune-operator/trainer:0.1.0"
DEFAULT_GPU_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
]
ENV_PREFIX = "FINETUNE_OPERATOR_"


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is configured with. Immutable; built once in ``main``."""

    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty with ``all_namespaces`` means cluster-wide."""
    all_namespaces: bool = False
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    gpu_tolerations: tuple[dict[str, Any], ...] = tuple(DEFAULT_GPU_TOLERATIONS)
    """Added to every pod that requests GPUs (GPU nodes are usually tainted)."""
    metrics_port: int = 8080
    """Prometheus /metrics; 0 disables."""
    health_port: int = 8081
    """/healthz (liveness) and /readyz (readiness); 0 disables."""
    leader_election: bool = True
    lease_name: str = "finetune-operator"
    lease_namespace: str | None = None
    """Defaults to the pod's namespace (in-cluster) or the first watched namespace."""
    lease_duration_seconds: float = 15.0
    lease_renew_seconds: float = 5.0
    identity: str = ""
    """Holder identity in the Lease; defaults to the pod name (HOSTNAME) plus the process id."""
    status_patch: bool = True
    """Let the trainer patch its own ``status.progress`` (a per-job ServiceAccount bound to
    ``trainer_cluster_role``)."""
    trainer_cluster_role: str = "finetune-operator-trainer"
    """The ClusterRole each trainer ServiceAccount is bound to (in its namespace): patch on finetunejobs/status
    only. The chart creates it; the operator never creates Roles, so it cannot grant anything else."""
    status_patch_interval_seconds: float = 10.0
    """Least time between the trainer's progress patches."""
    image_pull_grace_seconds: float = 300.0
    """How long an image pull may keep failing (Stalled) before the run is Failed."""
    status_min_interval_seconds: float = 0.5
    """Least time between two status writes of one FineTuneJob (bounds the API write rate)."""
    log_format: str = "json"
    log_level: str = "INFO"
    kubeconfig: str | None = None

    @property
    def clusterwide(self) -> bool:
        return self.all_namespaces or not self.namespaces


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="finetune-operator",
        description="Runs FineTuneJobs (finetune.dev/v1alpha1) as batch/v1 Jobs. "
        f"Every flag has an environment default: {ENV_PREFIX}<FLAG_IN_UPPER_SNAKE_CASE>.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        metavar="NS",
        help="watch this namespace (repeatable); env FINETUNE_OPERATOR_NAMESPACES=a,b",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", default=None, help="watch every namespace")
    p.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG") or os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: in-cluster service account, then $KUBECONFIG, ~/.kube/config)",
    )
    p.add_argument("--trainer-image", default=_env("TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE))
    p.add_argument(
        "--image-pull-policy",
        default=_env("IMAGE_PULL_POLICY", "IfNotPresent"),
        choices=["Always", "IfNotPresent", "Never"],
    )
    p.add_argument(
        "--gpu-tolerations",
        default=_env("GPU_TOLERATIONS"),
        help="JSON list of tolerations added to GPU pods (default: nvidia.com/gpu Exists NoSchedule)",
    )
    p.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8080")))
    p.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "8081")))
    p.add_argument(
        "--leader-election",
        dest="leader_election",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("LEADER_ELECTION", True),
    )
    p.add_argument("--lease-name", default=_env("LEASE_NAME", "finetune-operator"))
    p.add_argument("--lease-namespace", default=_env("LEASE_NAMESPACE") or os.environ.get("POD_NAMESPACE"))
    p.add_argument("--lease-duration", type=float, default=float(_env("LEASE_DURATION", "15")))
    p.add_argument("--lease-renew-interval", type=float, default=float(_env("LEASE_RENEW_INTERVAL", "5")))
    p.add_argument("--identity", default=_env("IDENTITY", ""))
    p.add_argument(
        "--status-patch",
        dest="status_patch",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("STATUS_PATCH", True),
        help="give each trainer a ServiceAccount allowed to patch its own FineTuneJob status",
    )
    p.add_argument(
        "--trainer-cluster-role",
        default=_env("TRAINER_CLUSTER_ROLE", "finetune-operator-trainer"),
        help="ClusterRole bound to each trainer's ServiceAccount (patch on finetunejobs/status)",
    )
    p.add_argument("--status-patch-interval", type=float, default=float(_env("STATUS_PATCH_INTERVAL", "10")))
    p.add_argument("--image-pull-grace", type=float, default=float(_env("IMAGE_PULL_GRACE", "300")))
    p.add_argument("--status-min-interval", type=float, default=float(_env("STATUS_MIN_INTERVAL", "0.5")))
    p.add_argument("--log-format", default=_env("LOG_FORMAT", "json"), choices=["json", "text"])
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    return p


def from_args(argv: Sequence[str] | None = None) -> OperatorConfig:
    args = build_parser().parse_args(argv)
    namespaces = tuple(args.namespace or ())
    all_ns = bool(args.all_namespaces)
    if not namespaces and not all_ns:
        env_ns = [n.strip() for n in (_env("NAMESPACES") or "").split(",") if n.strip()]
        namespaces = tuple(env_ns)
        all_ns = not namespaces
    tolerations = tuple(json.loads(args.gpu_tolerations)) if args.gpu_tolerations else tuple(DEFAULT_GPU_TOLERATIONS)
    if not isinstance(tolerations, tuple) or not all(isinstance(t, dict) for t in tolerations):
        raise SystemExit("--gpu-tolerations must be a JSON list of objects")
    identity = args.identity or f"{os.environ.get('HOSTNAME') or os.uname().nodename}-{os.getpid()}"
    return OperatorConfig(
        namespaces=namespaces,
        all_namespaces=all_ns,
        trainer_image=args.trainer_image,
        image_pull_policy=args.image_pull_policy,
        gpu_tolerations=tolerations,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        leader_election=args.leader_election,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace or (namespaces[0] if namespaces else None),
        lease_duration_seconds=args.lease_duration,
        lease_renew_seconds=args.lease_renew_interval,
        identity=identity,
        status_patch=args.status_patch,
        trainer_cluster_role=args.trainer_cluster_role,
        status_patch_interval_seconds=args.status_patch_interval,
        image_pull_grace_seconds=args.image_pull_grace,
        status_min_interval_seconds=args.status_min_interval,
        log_format=args.log_format,
        log_level=args.log_level.upper(),
        kubeconfig=args.kubeconfig,
    )
