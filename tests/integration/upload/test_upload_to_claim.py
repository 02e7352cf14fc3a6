"""`kubectl finetune upload` against the real cluster: the file is validated with the trainer's
reader, copied onto a local claim by a short-lived pod on the real node (Pod Security restricted),
checked by SHA-256 there, and the pod is gone afterwards; bad data, a missing claim and an existing
path copy nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_devcluster.node import BUSYBOX_IMAGE

TRAIN = Path(__file__).resolve().parents[3] / "examples" / "log-intent" / "train.jsonl"


@pytest.fixture
def claim(cluster, kubectl, namespace, dev_node, tmp_path):
    """A restricted namespace with the claim `datasets` on the node; yields its host directory."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    host_dir = tmp_path / "datasets"
    pv = cluster.local_claim(namespace, "datasets", host_dir, size="1Gi")
    yield host_dir
    kubectl("delete", "pv", pv, "--wait=false", check=False)


def upload(cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{cluster.control_plane.bin_dir}:{os.environ['PATH']}"}
    argv = [sys.executable, "-m", "finetune_cli.main", "upload", *args, "-n", namespace]
    argv += [f"--kubeconfig={cluster.kubeconfig}", f"--image={BUSYBOX_IMAGE}"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def pods(kubectl, namespace: str) -> str:
    return kubectl("get", "pods", "-o", "name", namespace=namespace).stdout.strip()


def test_upload_validates_copies_checks_and_cleans_up(cluster, kubectl, namespace, claim, tmp_path):
    done = upload(cluster, namespace, str(TRAIN), "--claim", "datasets", "--path", "log-intent/train.jsonl")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "pvc://datasets/log-intent/train.jsonl\n"
    assert "2000 records read (classification)" in done.stderr
    copy = claim / "log-intent" / "train.jsonl"
    assert copy.read_bytes() == TRAIN.read_bytes()
    assert (copy.stat().st_mode & 0o777, copy.stat().st_uid) == (0o644, 1000)
    assert [p.name for p in (claim).iterdir()] == ["log-intent"]  # no temporary file left
    assert pods(kubectl, namespace) == ""  # the copy pod was deleted (and waited for)

    again = upload(cluster, namespace, str(TRAIN), "--claim", "datasets", "--path", "log-intent/train.jsonl")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        "error: pvc://datasets/log-intent/train.jsonl exists; pass --replace to overwrite it"
    )
    smaller = tmp_path / "train.jsonl"
    smaller.write_text("".join(TRAIN.read_text().splitlines(keepends=True)[:50]))
    replaced = upload(
        cluster, namespace, str(smaller), "--claim", "datasets", "--path", "log-intent/train.jsonl", "--replace"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert copy.read_bytes() == smaller.read_bytes() and pods(kubectl, namespace) == ""


def test_bad_data_and_a_missing_claim_copy_nothing(cluster, kubectl, namespace, claim, tmp_path):
    bad = tmp_path / "train.jsonl"
    lines = TRAIN.read_text().splitlines(keepends=True)
    bad.write_text("".join(lines[:16]) + '{"text": "BGP peer down", "label": null}\n' + "".join(lines[16:]))
    done = upload(cluster, namespace, str(bad), "--claim", "datasets")
    assert done.returncode == 3
    assert done.stderr.strip() == 'error: train.jsonl:17: field "label": missing'
    missing = upload(cluster, namespace, str(TRAIN), "--claim", "nope")
    assert missing.returncode == 1
    assert (
        missing.stderr.strip().splitlines()[-1]
        == "error: claim 'nope' does not exist in the namespace (kubectl get pvc)"
    )
    assert list(claim.iterdir()) == [] and pods(kubectl, namespace) == ""
    events = kubectl("get", "events", "-o", "name", namespace=namespace).stdout
    assert "finetune-upload" not in events  # no pod was ever made
