"""The Grafana dashboard shipped with the chart queries only metrics the operator exports."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import finetune_operator.metrics  # noqa: F401 - registers the operator's metrics

DASHBOARD = (
    Path(__file__).resolve().parents[3] / "charts" / "finetune-operator" / "dashboards" / "finetune-operator.json"
)


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return (
        names
        | {m.name + "_total" for m in REGISTRY.collect() if m.type == "counter"}
        | {m.name + "_bucket" for m in REGISTRY.collect() if m.type == "histogram"}
    )


def test_every_panel_queries_metrics_the_operator_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {m for e in exprs for m in re.findall(r"\bfinetune_[a-z_]+", e)}
    assert used and used <= exported_names(), used - exported_names()
    # every per-run series is on the dashboard
    per_run = {n for n in exported_names() if n.startswith("finetune_job_")}
    assert per_run <= used, per_run - used


def test_panels_have_unique_ids_and_fit_the_grid():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)
