"""``status.reason`` values besides the FailureReasons of ``finetune_api.protocol``, and the
container states the verdicts group them by."""

from __future__ import annotations


class Reason:
    """Reasons of runs that are not failed (phases Pending, Running, Suspended, Succeeded)."""

    CREATING = "Creating"
    FETCHING = "Fetching"  # the fetch Job downloads the run's models and datasets
    WAITING_FOR_POD = "WaitingForPod"
    STARTING = "Starting"
    RUNNING = "Running"
    FINISHING = "Finishing"
    SUSPENDED = "Suspended"
    RESUMING = "Resuming"
    QUEUED = "Queued"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    VOLUME_MOUNT_FAILED = "VolumeMountFailed"
    NOT_PERMITTED = "NotPermitted"
    QUOTA_EXCEEDED = "QuotaExceeded"
    SUCCEEDED = "Succeeded"


IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
CONFIG_ERROR_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})

NOT_STARTED_REASONS = frozenset(
    {
        Reason.CREATING,
        Reason.FETCHING,
        Reason.WAITING_FOR_POD,
        Reason.STARTING,
        Reason.QUEUED,
        Reason.CONTAINER_CONFIG_ERROR,
        Reason.VOLUME_MOUNT_FAILED,
        Reason.NOT_PERMITTED,
        Reason.QUOTA_EXCEEDED,
        "Unschedulable",
        "ImagePullFailed",
    }
)
"""Reasons of a run whose trainer has not started: the cause a deadline keeps in its message."""
