"""A run over several nodes: the verdict read from the pod that speaks for it
(``topology.speaking_pod``), said of that pod: which node's pod failed or cannot be scheduled, and
where the run trains."""

from __future__ import annotations

import dataclasses

from finetune_api.protocol import FailureReason
from finetune_api.resource import FineTuneJobSpec, Phase

from ..messages import shorten
from ..reasons import Reason
from ..summaries import node_name
from ..topology import latest_by_index, who
from .base import Observed, Verdict

NOT_OF_ONE_POD = frozenset({FailureReason.DEADLINE_EXCEEDED, Reason.QUEUED, Reason.SUSPENDED, Reason.RESUMING})
"""Verdicts about the whole Job, not one of its pods."""


def across_nodes(v: Verdict, spec: FineTuneJobSpec, seen: Observed) -> Verdict:
    """``v``, decided from ``seen.pod``, naming that pod's node when several nodes run; where the
    run trains when it trains."""
    nodes, pod = spec.resources.nodes, seen.pod
    if nodes == 1 or pod is None or v.reason in NOT_OF_ONE_POD:
        return v
    if v.phase is Phase.RUNNING and v.reason == Reason.RUNNING:
        placed = sorted({n for p in latest_by_index(list(seen.pods)).values() if (n := node_name(p))})
        return dataclasses.replace(v, message=f"training on {nodes} nodes: {', '.join(placed)}")
    if v.phase in (Phase.FAILED, Phase.PENDING):
        return dataclasses.replace(v, message=shorten(f"{who(pod, nodes)}: {v.message}"))
    return v
