"""A running Job, seen through its pod: not created yet, unschedulable, pulling its image,
unable to start its container, starting, running."""

from __future__ import annotations

import re
from typing import Any

from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec, Phase

from .. import builders
from ..messages import shorten
from ..reasons import CONFIG_ERROR_REASONS, IMAGE_PULL_REASONS, Reason
from ..summaries import node_name, parse_time, pod_condition, trainer_container_status, waiting_state
from .base import Observed, Verdict

SECRET_GRACE_SECONDS = 10.0
"""How long a missing Secret (or key) may take to appear before the run fails (the kubelet retries it)."""
MISSING_SECRET = re.compile(r'secret "([^"]+)" not found|couldn\'t find key (\S+) in Secret \S+/(\S+)')


def from_pod(spec: FineTuneJobSpec, seen: Observed) -> Verdict:
    pod = seen.pod
    if pod is None:
        return Verdict(Phase.PENDING, Reason.WAITING_FOR_POD, "the Job has not created the trainer pod yet")
    pod_phase = (pod.get("status") or {}).get("phase") or "Pending"
    if pod_phase == "Pending":
        return _pending(pod, spec, seen)
    if pod_phase == "Running":
        return Verdict(Phase.RUNNING, Reason.RUNNING, f"training on node {node_name(pod)}")
    return Verdict(Phase.RUNNING, Reason.FINISHING, f"the trainer pod is {pod_phase}; waiting for the Job")


def _pending(pod: dict[str, Any], spec: FineTuneJobSpec, seen: Observed) -> Verdict:
    scheduled = pod_condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return Verdict(
            Phase.PENDING,
            FailureReason.UNSCHEDULABLE,
            unschedulable_message(spec, scheduled.get("message") or ""),
            stalled=True,
        )
    waiting = waiting_state(pod)
    wreason = waiting.get("reason") or ""
    since = (
        parse_time((scheduled or {}).get("lastTransitionTime"))
        or parse_time(pod["metadata"].get("creationTimestamp"))
        or seen.now
    )
    elapsed = (seen.now - since).total_seconds()
    if wreason in IMAGE_PULL_REASONS:
        return _image_pull(pod, spec, waiting, elapsed, seen.image_pull_grace_seconds)
    if wreason in CONFIG_ERROR_REASONS:
        missing = MISSING_SECRET.search(waiting.get("message") or "")
        if missing:
            return _secret_missing(missing, elapsed)
        return Verdict(
            Phase.PENDING,
            Reason.CONTAINER_CONFIG_ERROR,
            shorten(f"{wreason}: {waiting.get('message', '')}"),
            stalled=True,
        )
    if seen.mount_problem:
        return Verdict(
            Phase.PENDING,
            Reason.VOLUME_MOUNT_FAILED,
            shorten(f"the trainer pod cannot mount its volumes on node {node_name(pod)}: {seen.mount_problem}"),
            stalled=True,
        )
    node = node_name(pod)
    return Verdict(
        Phase.PENDING,
        Reason.STARTING,
        f"the trainer pod is starting on node {node}" if node else "the trainer pod is being scheduled",
    )


def _secret_missing(missing: re.Match[str], elapsed: float) -> Verdict:
    """A Secret the spec references, or its key, does not exist: Failed after SECRET_GRACE_SECONDS
    (a Secret applied a moment after the FineTuneJob still counts), and the Job is suspended."""
    field = "spec.model.tokenSecretRef"
    if missing.group(1):
        what = f"Secret {missing.group(1)} ({field}) does not exist in the namespace: create it or fix {field}.name"
    else:
        what = f"Secret {missing.group(3)} ({field}) has no key {missing.group(2)}: add that key or fix {field}.key"
    if elapsed < SECRET_GRACE_SECONDS:
        return Verdict(
            Phase.PENDING,
            Reason.CONTAINER_CONFIG_ERROR,
            shorten(what),
            stalled=True,
            requeue_after=max(1.0, SECRET_GRACE_SECONDS - elapsed),
        )
    return Verdict(Phase.FAILED, FailureReason.SECRET_NOT_FOUND, shorten(what), suspend_job=True)


def _image_pull(
    pod: dict[str, Any], spec: FineTuneJobSpec, waiting: dict[str, Any], elapsed: float, grace: float
) -> Verdict:
    """Stalled while the image cannot be pulled, Failed (and the Job suspended) after ``grace`` seconds."""
    image = (trainer_container_status(pod) or {}).get("image") or spec.image or "the trainer image"
    message = shorten(f"cannot pull image {image}: {waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": "))
    if elapsed >= grace:
        return Verdict(
            Phase.FAILED,
            FailureReason.IMAGE_PULL_FAILED,
            message + f" (failing for {int(elapsed)}s, the Job was suspended)",
            suspend_job=True,
        )
    return Verdict(
        Phase.PENDING,
        FailureReason.IMAGE_PULL_FAILED,
        message + f" (the run fails if this lasts {int(grace)}s)",
        stalled=True,
        requeue_after=max(1.0, grace - elapsed),
    )


def gpu_description(spec: FineTuneJobSpec) -> str:
    res = spec.resources
    what = f"{res.gpus} nvidia.com/gpu" if res.gpus else "no GPU"
    if res.gpu_product:
        what += f" of product {res.gpu_product} (node label nvidia.com/gpu.product={res.gpu_product})"
    return what


def unschedulable_message(spec: FineTuneJobSpec, scheduler_message: str) -> str:
    """Why the trainer pod cannot be placed, in the user's terms: its volume claims when the
    scheduler only complains about them (missing or unbound claims: no GPU would help), else the
    GPU count and product it asked for, with the scheduler's own summary."""
    quoted = f" (scheduler: {scheduler_message or 'no message'})"
    lowered = scheduler_message.lower()
    if "persistentvolumeclaim" in lowered and "nvidia.com/gpu" not in lowered:
        missing = sorted(set(re.findall(r'persistentvolumeclaim "([^"]+)" not found', lowered)))
        if missing:
            return shorten(
                f"PersistentVolumeClaim {', '.join(missing)} not found in the namespace: create it "
                f"(the trainer mounts {', '.join(sorted(builders.claims(spec)))})" + quoted
            )
        names = ", ".join(sorted(builders.claims(spec)))
        return shorten(
            f"the trainer pod cannot be scheduled until its PersistentVolumeClaims ({names}) "
            f"exist and are bound" + quoted
        )
    return shorten(
        f"no node can run the trainer pod, which needs {gpu_description(spec)}, "
        f"{spec.resources.cpu} CPU and {spec.resources.memory} memory" + quoted
    )
