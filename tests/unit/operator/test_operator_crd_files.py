"""The committed CRDs are exactly what the generator renders from the pydantic models."""

from pathlib import Path

from finetune_api.crd import build_crd, crd_paths, render_crd

ROOT = Path(__file__).resolve().parents[3]


def test_committed_crds_match_generator():
    expected = render_crd()
    for path in crd_paths(ROOT):
        assert path.exists(), f"{path} missing: run `python -m finetune_api.crd --write`"
        assert path.read_text() == expected, f"{path} is stale: run `python -m finetune_api.crd --write`"


def test_crd_has_status_subresource_and_kstatus_conditions():
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
