"""`kubectl finetune upload FILE --claim CLAIM [--path PATH]`: put a local dataset on a claim.

1. The file is validated with the trainer's own reader (finetune_trainer.data: format detection,
   every record's fields, curation, `minRecords`), so a bad file fails here with the trainer's
   message (`train.jsonl:17: field "label": ...`) and nothing is copied.
2. A short-lived pod (Pod Security `restricted`: non-root uid 1000, no privilege escalation, every
   capability dropped, read-only root, RuntimeDefault seccomp) mounts the claim at /data; the file
   is streamed into it through `kubectl exec -i` to a temporary name, its SHA-256 is computed on the
   claim and compared, and it is renamed into place (refused when PATH exists, unless --replace).
3. The pod is deleted, and `pvc://CLAIM/PATH` is printed: the value for `dataset.source`.

The pod's image needs only a POSIX shell with cat, mkdir, mv, rm, chmod and sha256sum (busybox).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from finetune_api.training import DatasetFormat, DatasetSpec, Method

MOUNT = "/data"
PATH_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
DEFAULT_IMAGE = "docker.io/library/busybox:1.37"
POD_DEADLINE_SECONDS = 1800


class UploadError(Exception):
    """One line for the user; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def validate(file: Path, fmt: DatasetFormat, method: Method | None, min_records: int) -> str:
    """The trainer's checks of a training file; a summary line, or UploadError(code 3) with its message."""
    from finetune_trainer.data import load_dataset_spec
    from finetune_trainer.errors import DataError
    from finetune_trainer.formats import formats_of

    spec = DatasetSpec(source=str(file.resolve()), format=fmt, min_records=min_records)
    try:
        prepared = load_dataset_spec(spec, seed=42, allowed=formats_of(method) if method else None)
    except DataError as exc:
        raise UploadError(exc.message, code=3) from None
    return f"{file.name}: {prepared.report.summary()}"


def check_path(path: str) -> str:
    if not PATH_PATTERN.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise UploadError(f"--path {path!r}: a relative path of letters, digits, '.', '_', '-' and '/', no '..'")
    return path


def pod_manifest(name: str, claim: str, image: str) -> dict[str, Any]:
    """The upload pod: the claim at /data, restricted security, waits for the copy (and no longer)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "finetune-upload"}},
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": POD_DEADLINE_SECONDS,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "upload",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", str(POD_DEADLINE_SECONDS)],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": MOUNT}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


@dataclass
class Kubectl:
    """kubectl with the user's flags (kubeconfig, context, namespace)."""

    base: Sequence[str]

    def __call__(
        self, *args: str, input: bytes | None = None, stdin: BinaryIO | None = None, check: bool = True
    ) -> str:
        done = subprocess.run([*self.base, *args], input=input, stdin=stdin, capture_output=True, timeout=600)
        if check and done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"]
            raise UploadError(f"kubectl {args[0]}: {lines[-1]}")
        return done.stdout.decode(errors="replace")

    def sh(self, pod: str, script: str, stdin: BinaryIO | None = None) -> str:
        """Run `sh -c script` in the pod (stdin streamed to it when given); its stdout."""
        return self("exec", *(["-i"] if stdin else []), pod, "--", "sh", "-c", script, stdin=stdin)


@dataclass
class Upload:
    file: Path
    claim: str
    path: str
    replace: bool = False
    image: str = DEFAULT_IMAGE
    ready_timeout: float = 180.0


def upload(kubectl: Kubectl, job: Upload) -> str:
    """Copy a validated file onto the claim through a short-lived pod; its pvc:// URI."""
    if kubectl("get", "pvc", job.claim, "-o", "name", check=False).strip() == "":
        raise UploadError(f"claim {job.claim!r} does not exist in the namespace (kubectl get pvc)")
    sha = hashlib.sha256(job.file.read_bytes()).hexdigest()
    pod = f"finetune-upload-{uuid.uuid4().hex[:6]}"
    kubectl("create", "-f", "-", input=json.dumps(pod_manifest(pod, job.claim, job.image)).encode())
    try:
        _wait_running(kubectl, pod, job.ready_timeout)
        target, tmp = f"{MOUNT}/{job.path}", f"{MOUNT}/.upload-{pod}"
        exists = kubectl.sh(pod, f'test -e "{target}" && echo exists || echo absent').strip()
        if exists == "exists" and not job.replace:
            raise UploadError(f"pvc://{job.claim}/{job.path} exists; pass --replace to overwrite it")
        with open(job.file, "rb") as f:
            copied = kubectl.sh(pod, f'set -e; cat > "{tmp}"; sha256sum "{tmp}"', stdin=f).split()
        if not copied or copied[0] != sha:
            kubectl.sh(pod, f'rm -f "{tmp}"')
            raise UploadError(f"the copy on the claim has sha256 {copied[:1]}, the file {sha}: nothing was replaced")
        mv = "mv -f" if job.replace else "mv -n"
        place = f'set -e; mkdir -p "$(dirname "{target}")"; chmod 0644 "{tmp}"; {mv} "{tmp}" "{target}"'
        final = kubectl.sh(pod, f'{place}; rm -f "{tmp}"; sha256sum "{target}"').split()
        if not final or final[0] != sha:
            raise UploadError(f"pvc://{job.claim}/{job.path} changed while it was written (sha256 {final[:1]})")
    finally:
        kubectl("delete", "pod", pod, "--ignore-not-found", "--wait=true", "--timeout=60s", check=False)
    return f"pvc://{job.claim}/{job.path}"


def _wait_running(kubectl: Kubectl, pod: str, timeout: float) -> None:
    done = kubectl("wait", "--for=condition=Ready", f"pod/{pod}", f"--timeout={int(timeout)}s", check=False)
    if "condition met" not in done:
        raise UploadError(f"the upload pod {pod} did not start within {timeout:.0f}s: {why_not_ready(kubectl, pod)}")


def why_not_ready(kubectl: Kubectl, pod: str) -> str:
    """The container's waiting reason and message (an image it cannot pull) and the pod's latest event
    (a claim it cannot mount), else its conditions."""
    try:
        status = json.loads(kubectl("get", "pod", pod, "-o", "json", check=False) or "{}").get("status") or {}
    except ValueError:
        status = {}
    waiting = [
        f"{w.get('reason', '')} {w.get('message', '')}".strip()
        for c in status.get("containerStatuses") or []
        if (w := (c.get("state") or {}).get("waiting"))
    ]
    events = kubectl(
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={pod}",
        "--sort-by=.lastTimestamp",
        "-o",
        "jsonpath={.items[-1:].reason}: {.items[-1:].message}",
        check=False,
    ).strip(": \n")
    said = "; ".join(part for part in (_flat(" ".join(waiting)), _flat(events)) if part)
    conditions = " ".join(c["message"] for c in status.get("conditions") or [] if c.get("message"))
    return said or conditions or "pending"


def _flat(text: str) -> str:
    """One line, single-spaced (kubelet messages carry newlines and runs of spaces)."""
    return " ".join(text.split())
