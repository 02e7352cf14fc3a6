"""Jobs, pods and trainer summaries as the API server reports them, for the status tests."""

import datetime as dt

from finetune_api.protocol import TrainerSummary
from finetune_operator.runstatus import compute as compute_status

NOW = dt.datetime(2025, 1, 1, 1, 0, 0, tzinfo=dt.UTC)
T0 = "2025-01-01T00:00:00Z"
T_START = "2025-01-01T00:10:00Z"
T_END = "2025-01-01T00:40:00Z"


def job(conditions=(), suspend=False, **status):
    return {
        "metadata": {"name": "demo-trainer", "uid": "j1", "creationTimestamp": T0},
        "spec": {"suspend": suspend},
        "status": {"conditions": [dict(c, status=c.get("status", "True")) for c in conditions], **status},
    }


def pod(
    phase="Pending",
    *,
    scheduled=None,
    waiting=None,
    running=False,
    terminated=None,
    node="gpu-a100-0",
    name="demo-trainer-abcde",
    created=T0,
):
    conds = []
    if scheduled is not None:
        conds.append({"type": "PodScheduled", **scheduled})
    cs = {"name": "trainer", "image": "trainer:test", "state": {}}
    if waiting:
        cs["state"]["waiting"] = waiting
    if running:
        cs["state"]["running"] = {"startedAt": T_START}
    if terminated:
        cs["state"]["terminated"] = {"startedAt": T_START, "finishedAt": T_END, **terminated}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node if (scheduled or {}).get("status") == "True" else None},
        "status": {"phase": phase, "conditions": conds, "containerStatuses": [cs]},
    }


SCHEDULED = {"status": "True", "lastTransitionTime": T0}


def compute(ftj, j=None, p=None, **kw):
    return compute_status(ftj, j, p, now=NOW, **kw)


def cond(status, ctype):
    return next(c for c in status["conditions"] if c["type"] == ctype)


def summary_message(**kw):
    return TrainerSummary(**kw).to_termination_message()
