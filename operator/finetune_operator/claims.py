"""The output claim's access modes: read once before a run's children are created, where they
matter (several nodes write checkpoints to it; several serving replicas mount it), and the
refusal when the claim cannot be shared that way (pure, but for the one read)."""

from __future__ import annotations

from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec
from finetune_api.serving import claim_access_problem

from .kube import ApiError, KubeClient, object_path
from .refusals import ChildrenBlocked

SHARED_WRITES = "ReadWriteMany"


def access_modes_matter(spec: FineTuneJobSpec) -> bool:
    """Several nodes, or serving manifests with several replicas: the claim must be shared."""
    serving = spec.serving.replicas > 1 and spec.serving.runtimes != []
    return spec.resources.nodes > 1 or serving


def access_modes(claim: dict[str, Any]) -> list[str]:
    """The claim's access modes: its bound volume's (status), else the ones it asks for (spec)."""
    modes = (claim.get("status") or {}).get("accessModes") or (claim.get("spec") or {}).get("accessModes")
    return [str(m) for m in modes or []]


def claim_refusal(spec: FineTuneJobSpec, modes: list[str] | None) -> ChildrenBlocked | None:
    """Why the run cannot use its output claim (final: the claim's modes do not change), one line;
    None when it can, or when the modes are unknown (no such claim: the pod waits for it, as ever)."""
    if modes is None:
        return None
    claim, nodes = spec.output.pvc, spec.resources.nodes
    if nodes > 1 and SHARED_WRITES not in modes:
        said = ", ".join(modes) or "no access modes"
        return ChildrenBlocked(
            FailureReason.CLAIM_ACCESS_MODE,
            f"resources.nodes {nodes} needs output.pvc {claim!r} to be ReadWriteMany (it is {said}): every node's "
            "pod writes checkpoints to it; use a ReadWriteMany claim (NFS, CephFS, a cloud file store) or "
            "resources.nodes: 1",
            final=True,
        )
    if access_modes_matter(spec):
        problem = claim_access_problem(spec.serving.replicas, claim, modes)
        if problem is not None:
            return ChildrenBlocked(FailureReason.CLAIM_ACCESS_MODE, problem, final=True)
    return None


async def read_access_modes(client: KubeClient, namespace: str, spec: FineTuneJobSpec) -> list[str] | None:
    """The output claim's access modes when they matter (``access_modes_matter``); None when they
    do not, or the claim does not exist (yet)."""
    if not access_modes_matter(spec):
        return None
    probe = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec.output.pvc, "namespace": namespace},
    }
    try:
        claim = await client.get(object_path(probe))
    except ApiError as e:
        if e.status == 404:
            return None
        raise
    return access_modes(claim)
