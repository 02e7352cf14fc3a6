"""Reading Jobs, pods and the trainer's summary."""

import json

from finetune_operator.summaries import latest_pod, parse_summary
from support.status_objects import pod


def test_latest_pod():
    a = pod(name="a", created="2025-01-01T00:00:00Z")
    b = pod(name="b", created="2025-01-01T00:05:00Z")
    assert latest_pod([a, b])["metadata"]["name"] == "b"
    assert latest_pod([]) is None


def test_summaries_round_trip():
    assert parse_summary(json.dumps({"outcome": "failed", "reason": "InvalidData"})).reason == "InvalidData"
    assert parse_summary("not json") is None
    assert parse_summary(None) is None
