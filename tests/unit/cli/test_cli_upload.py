"""`kubectl finetune upload`'s pure parts: the copy pod meets Pod Security `restricted`, paths on the
claim stay on it, and the validator is the trainer's (its messages, no torch). The copy itself runs
on the real node in tests/integration/upload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_api.training import DatasetFormat, Method
from finetune_cli.upload import UploadError, check_path, pod_manifest, validate, why_not_ready

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "log-intent" / "train.jsonl"


def test_the_copy_pod_is_restricted_and_mounts_only_the_claim():
    pod = pod_manifest("finetune-upload-abc", "datasets", "busybox:1.37")["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False and pod["activeDeadlineSeconds"] > 0
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}]


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "/abs/path", "a//b", "a b.jsonl", "./x"])
def test_paths_that_would_leave_the_claim_are_refused(path):
    with pytest.raises(UploadError, match="--path"):
        check_path(path)
    assert check_path("log-intent/train.jsonl") == "log-intent/train.jsonl"


def test_validation_is_the_trainers(tmp_path):
    assert validate(EXAMPLE, DatasetFormat.AUTO, Method.CLASSIFICATION, 10).startswith(
        "train.jsonl: 2000 records read (classification)"
    )
    with pytest.raises(UploadError, match="records are in 'classification' format, which this method cannot") as err:
        validate(EXAMPLE, DatasetFormat.AUTO, Method.SFT, 10)
    assert err.value.code == 3
    few = tmp_path / "few.jsonl"
    few.write_text("".join(EXAMPLE.read_text().splitlines(keepends=True)[:5]))
    with pytest.raises(UploadError, match=r"few.jsonl: only 5 usable records .* dataset.minRecords is 10"):
        validate(few, DatasetFormat.AUTO, None, 10)


def test_the_command_needs_no_torch():
    probe = "import sys, finetune_cli.main, finetune_cli.upload, finetune_trainer.data; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


class AnsweringKubectl:
    """Answers `kubectl get pod -o json` and `kubectl get events` with recorded API answers."""

    def __init__(self, pod: dict, event: str) -> None:
        self.pod, self.event = pod, event

    def __call__(self, *args: str, check: bool = True) -> str:
        return json.dumps(self.pod) if args[:2] == ("get", "pod") else self.event


def test_a_pod_that_does_not_start_says_why_in_one_line():
    """The upload pod of a CI run that could not pull its image (Kubernetes 1.35's re-pull check)."""
    message = 'failed to pull and unpack image "localhost/x:dev":\n  Head "https://localhost/v2/x/manifests/dev"'
    pod = {
        "status": {
            "conditions": [{"type": "Ready", "message": "containers with unready status: [upload]"}],
            "containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull", "message": message}}}],
        }
    }
    said = why_not_ready(AnsweringKubectl(pod, "Failed: Error: ErrImagePull\n"), "finetune-upload-abc")  # type: ignore[arg-type]
    assert said == (
        'ErrImagePull failed to pull and unpack image "localhost/x:dev": Head '
        '"https://localhost/v2/x/manifests/dev"; Failed: Error: ErrImagePull'
    )
    unready = {"status": {"conditions": [{"type": "Ready", "message": "containers with unready status: [upload]"}]}}
    assert why_not_ready(AnsweringKubectl(unready, ""), "p") == "containers with unready status: [upload]"  # type: ignore[arg-type]
    assert why_not_ready(AnsweringKubectl({}, ""), "p") == "pending"  # type: ignore[arg-type]
