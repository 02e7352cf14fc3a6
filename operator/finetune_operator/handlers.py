"""The kopf wiring: settings, in-memory indexes and one small handler per event.

Every watch event of a FineTuneJob (including kopf's initial listing at startup, i.e. "resume",
and ``spec.suspend`` changes), of a Job or of a Pod labelled ``finetune.dev/finetunejob``
(server-side label selector) only hands kopf's indexes to the reconciler and enqueues the
FineTuneJob; ``reconciler.Reconciler`` does the work. ``on.delete`` (only for
``output.retention: Delete``, so only those carry the finalizer) runs the output cleanup. kopf
writes nothing to a FineTuneJob except for that deletion handler, whose bookkeeping lives in
annotations with the ``finetune.dev`` prefix, never in spec or status.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import TYPE_CHECKING, Any

import kopf

from finetune_api import GROUP, PLURAL, VERSION

from . import builders
from .reconciler import STATUS_DELAY, Reconciler
from .summaries import job_summary, pod_summary
from .views import Key

if TYPE_CHECKING:
    from kopf._core.intents.filters import MetaFilter  # the type of `labels=` (kopf does not export it)

REGISTRY = kopf.OperatorRegistry()
FINALIZER = f"{GROUP}/cleanup"
WATCHED_COMPONENTS = ("trainer", "fetch")  # the trainer Job and the fetch Job before it (and their pods)


def _watched_component(value: str | None, **_: Any) -> bool:
    return value in WATCHED_COMPONENTS


OWN_CHILDREN: MetaFilter = {builders.LABEL_JOB: kopf.PRESENT, builders.LABEL_COMPONENT: _watched_component}
WORKER_LIMIT = 100  # kopf's per-object workers running at once


def configure_settings(settings: kopf.OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["status"]
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    settings.scanning.disabled = True  # no CRD/namespace watching: fewer permissions
    # server-side filtering: only our own Jobs and Pods are listed, watched and kept in memory
    own = f"{builders.LABEL_JOB},{builders.LABEL_COMPONENT} in ({','.join(WATCHED_COMPONENTS)})"
    settings.watching.label_selectors[("batch", "v1", "jobs")] = own
    settings.watching.label_selectors[("", "v1", "pods")] = own
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Memory (docs/benchmarks.md): kopf gives every object its own worker task. Unbounded, the
    # initial listing of 1,000 FineTuneJobs and their Jobs runs 2,000 workers at once, and the
    # memory of that peak stays fragmented afterwards. Our handlers only index and enqueue (the
    # reconcile runs in our own queue), so 100 workers that exit 0.1 s after their last event
    # keep up with bursts; the listing comes in pages of 100.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 0.1
    settings.watching.chunk_size = 100
    settings.networking.request_timeout = 60


def trim_ftj(body: Any) -> dict[str, Any]:
    """The part of a FineTuneJob the operator keeps in memory."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: copy.deepcopy(meta.get(k))
            for k in (
                "name",
                "namespace",
                "uid",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "resourceVersion",
            )
            if meta.get(k) is not None
        },
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy({k: v for k, v in dict(body.get("status") or {}).items() if k != "kopf"}),
    }


def _reconciler(memo: Any, ftj_index: kopf.Index, job_index: kopf.Index, pod_index: kopf.Index) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    reconciler.views.update(ftj_index, job_index, pod_index)
    return reconciler


# kopf's handler protocols (IndexingFn, WatchingFn, ChangingFn) type `namespace` as `str | None`
# (they serve cluster-scoped resources too; ours are all namespaced) and cannot express the index
# arguments kopf passes by name, hence the `type: ignore[arg-type]` on the decorators below.

# --- indexes (kopf fills them before any handler runs) ----------------------------------------


@kopf.index(GROUP, VERSION, PLURAL, registry=REGISTRY)  # type: ignore[arg-type]
async def ftj_index(namespace: str, name: str, body: Any, **_: Any) -> dict[Key, str]:
    # Kept as one compact JSON string (unpacked per reconcile, ~20 µs): a tree of small dicts per
    # object costs ~5x the memory and fragments the allocator (see docs/benchmarks.md).
    return {(namespace, name): json.dumps(trim_ftj(body), separators=(",", ":"))}


@kopf.index("batch", "v1", "jobs", labels=OWN_CHILDREN, registry=REGISTRY)  # type: ignore[arg-type]
async def job_index(namespace: str, labels: Any, body: Any, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, labels[builders.LABEL_JOB]): job_summary(dict(body))}


@kopf.index("", "v1", "pods", labels=OWN_CHILDREN, registry=REGISTRY)  # type: ignore[arg-type]
async def pod_index(namespace: str, labels: Any, body: Any, **_: Any) -> dict[Key, dict[str, Any]]:
    return {(namespace, labels[builders.LABEL_JOB]): pod_summary(dict(body))}


# --- triggers ---------------------------------------------------------------------------------


@kopf.on.startup(registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure_settings(settings)


@kopf.on.cleanup(registry=REGISTRY)
async def cleanup(memo: Any, **_: Any) -> None:
    """kopf stopping on SIGTERM (its own signal handlers) leaves its waiter on our stop flag
    pending, which holds the exit for 5 s; setting the flag lets it end at once."""
    stop = getattr(memo, "stop", None)
    if stop is not None:
        stop.set()


@kopf.on.event(GROUP, VERSION, PLURAL, registry=REGISTRY)  # type: ignore[arg-type]
async def ftj_event(
    type: str | None,
    namespace: str,
    name: str,
    memo: Any,
    ftj_index: kopf.Index,
    job_index: kopf.Index,
    pod_index: kopf.Index,
    **_: Any,
) -> None:
    """Every FineTuneJob event, including the initial listing at startup (kopf's type None: the
    "resume" case) and spec.suspend changes, reconciles it at once."""
    reconciler = _reconciler(memo, ftj_index, job_index, pod_index)
    if type == "DELETED":
        reconciler.forget((namespace, name))
    else:
        reconciler.enqueue((namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels=OWN_CHILDREN, registry=REGISTRY)  # type: ignore[arg-type]
async def job_event(
    type: str | None,
    namespace: str,
    labels: Any,
    memo: Any,
    ftj_index: kopf.Index,
    job_index: kopf.Index,
    pod_index: kopf.Index,
    **_: Any,
) -> None:
    reconciler = _reconciler(memo, ftj_index, job_index, pod_index)
    key = (namespace, labels[builders.LABEL_JOB])
    if type == "DELETED":
        reconciler.job_deleted(key)
    reconciler.enqueue(key, STATUS_DELAY)


@kopf.on.event("", "v1", "pods", labels=OWN_CHILDREN, registry=REGISTRY)  # type: ignore[arg-type]
async def pod_event(
    namespace: str,
    labels: Any,
    memo: Any,
    ftj_index: kopf.Index,
    job_index: kopf.Index,
    pod_index: kopf.Index,
    **_: Any,
) -> None:
    _reconciler(memo, ftj_index, job_index, pod_index).enqueue((namespace, labels[builders.LABEL_JOB]), STATUS_DELAY)


@kopf.on.delete(  # type: ignore[arg-type]
    GROUP, VERSION, PLURAL, field="spec.output.retention", value="Delete", backoff=5, registry=REGISTRY
)
async def delete_output(
    body: Any, memo: Any, retry: int, ftj_index: kopf.Index, job_index: kopf.Index, pod_index: kopf.Index, **_: Any
) -> None:
    await _reconciler(memo, ftj_index, job_index, pod_index).cleanup_output(trim_ftj(body), retry)
