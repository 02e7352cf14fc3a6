"""docs/api.md is generated from the CRD by hack/gen-api-docs.py and must be up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "hack" / "gen-api-docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_doc_is_up_to_date():
    gen = _generator()
    assert (ROOT / "docs" / "api.md").read_text() == gen.render(), (
        "docs/api.md is stale: run `python hack/gen-api-docs.py` (or `make crd`)"
    )


def _fields(schema: dict, path: str):
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", name, prop
        yield from _fields(prop, f"{path}.{name}")
        if isinstance(prop.get("items"), dict):
            yield from _fields(prop["items"], f"{path}.{name}[]")


def test_api_doc_lists_every_field_with_its_description():
    crd = yaml.safe_load((ROOT / "crds" / "finetune.dev_finetunejobs.yaml").read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    doc = (ROOT / "docs" / "api.md").read_text()
    for top in ("spec", "status"):
        assert f"## `{top}`" in doc
        for path, name, prop in _fields(root["properties"][top], top):
            parent = path.rsplit(".", 1)[0]
            section = doc.split(f"## `{parent}`\n", 1)[1].split("\n## ", 1)[0]
            row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), None)
            assert row, f"{path} is missing from docs/api.md"
            description = " ".join(prop.get("description", "").split())
            assert description.replace("|", "\\|")[:60] in row, f"{path}: description missing"
            if "default" in prop and prop["default"] not in ({},):
                assert "`" in row.split("|")[4], f"{path}: default missing"
