"""Read access to kopf's in-memory indexes (filled before any handler runs), handed over as the
``kopf.Index`` keyword arguments of the event handlers (kopf's documented index access)."""

from __future__ import annotations

import json
from typing import Any

from . import builders

Key = tuple[str, str]  # (namespace, FineTuneJob name)


class Views:
    def __init__(self) -> None:
        self.ftjs: Any = {}
        self.jobs: Any = {}
        self.pods: Any = {}

    def update(self, ftj_index: Any, job_index: Any, pod_index: Any) -> None:
        self.ftjs, self.jobs, self.pods = ftj_index, job_index, pod_index

    def ftj(self, key: Key) -> dict[str, Any] | None:
        for packed in self.ftjs.get(key) or ():
            return json.loads(packed) if isinstance(packed, str) else packed
        return None

    def job(self, key: Key, ftj_uid: str) -> dict[str, Any] | None:
        """This run's Job: named ``<name>-trainer`` and controlled by the FineTuneJob with ``ftj_uid``."""
        return self._child_job(key, ftj_uid, builders.job_name(key[1]))

    def fetch_job(self, key: Key, ftj_uid: str) -> dict[str, Any] | None:
        """This run's fetch Job: named ``<name>-fetch`` and controlled by the FineTuneJob with ``ftj_uid``."""
        return self._child_job(key, ftj_uid, builders.child_name(key[1], "fetch"))

    def _child_job(self, key: Key, ftj_uid: str, wanted: str) -> dict[str, Any] | None:
        return next(
            (
                j
                for j in self.jobs.get(key) or ()
                if j["metadata"]["name"] == wanted and j["metadata"]["controllerUid"] == ftj_uid
            ),
            None,
        )

    def pods_of(self, key: Key, job_uid: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.get(key) or () if p["metadata"]["controllerUid"] == job_uid]
