"""examples/*.yaml pass `kubectl apply --dry-run=server` (strict field validation) in a namespace
with the FineTuneJob CRD installed: the schema, the defaults and the CEL rules accept them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
CRD_FILE = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
NAMES = ["pvc.yaml", "sft-qlora-pvc.yaml", "dpo-from-sft.yaml", "hub-model-token.yaml", "kueue-queued.yaml"]


@pytest.fixture(scope="module")
def ftj_crd(cluster, kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/finetunejobs.finetune.dev")
    deadline = time.monotonic() + 30
    while kubectl("get", "finetunejobs", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "finetunejobs not served"
        time.sleep(0.2)


@pytest.mark.parametrize("name", NAMES)
def test_example_passes_server_side_dry_run(name, ftj_crd, kubectl, namespace):
    text = (EXAMPLES / name).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    result = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=text, namespace=namespace, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs), result.stdout
