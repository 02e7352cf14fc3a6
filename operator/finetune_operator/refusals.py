"""Why the API server refused to create one of a run's children, in the user's terms (pure)."""

from __future__ import annotations

import dataclasses

from finetune_api.protocol import FailureReason

from .messages import one_line, shorten
from .reasons import Reason

QUOTA_RETRY_SECONDS = 10.0  # quota frees up as other runs end
NOT_PERMITTED_RETRY_SECONDS = 60.0  # an admin opting the namespace in is rarer


@dataclasses.dataclass(frozen=True)
class ChildrenBlocked:
    """Why the operator could not create the run's children: ``final`` ones fail the run, the
    others are tried again after ``retry_after`` seconds."""

    reason: str
    message: str
    final: bool
    retry_after: float = 0.0


def refusal(status_code: int, message: str, what: str) -> ChildrenBlocked | None:
    """Why the API server refused to create ``what`` (e.g. ``Job x-trainer``), in the user's terms;
    None for errors that are retried as they are (server errors, a namespace being deleted)."""
    first = one_line(message or "")
    lowered = first.lower()
    if status_code in (400, 422):  # the spec produced an object the server's validation refuses
        return ChildrenBlocked(FailureReason.INVALID_SPEC, shorten(f"the API server refused {what}: {first}"), True)
    if status_code != 403 or "being terminated" in lowered:
        return None
    if "exceeded quota" in lowered:
        return ChildrenBlocked(
            Reason.QUOTA_EXCEEDED,
            shorten(f"{what} would exceed a ResourceQuota of the namespace (retrying): {first}"),
            False,
            retry_after=QUOTA_RETRY_SECONDS,
        )
    if "cannot create resource" in lowered or "validatingadmissionpolicy" in lowered:
        return ChildrenBlocked(
            Reason.NOT_PERMITTED,
            shorten(
                f"the operator may not create {what} here (retrying every {NOT_PERMITTED_RETRY_SECONDS:.0f}s): {first}"
            ),
            False,
            retry_after=NOT_PERMITTED_RETRY_SECONDS,
        )
    # Pod Security, a missing PriorityClass, a LimitRange: admission refuses the pod as specified
    return ChildrenBlocked(FailureReason.POD_REJECTED, shorten(f"admission refused {what}: {first}"), True)
