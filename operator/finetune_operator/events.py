"""Events on FineTuneJobs (core/v1, posted by kopf), best effort."""

from __future__ import annotations

import logging
from typing import Any

import kopf

logger = logging.getLogger("finetune_operator")


def post_event(ftj: dict[str, Any], etype: str, reason: str, message: str) -> None:
    # kopf types the object as its Body view; it reads any mapping with apiVersion, kind and metadata.
    try:
        if etype == "Warning":
            kopf.warn(ftj, reason=reason, message=message)  # type: ignore[arg-type]
        else:
            kopf.info(ftj, reason=reason, message=message)  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - events are best effort
        logger.debug("could not post an event: %s", e)
