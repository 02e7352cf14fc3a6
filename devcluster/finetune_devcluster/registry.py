"""An OCI registry for the dev cluster: the CNCF distribution registry (built from its Go module by
hack/build-registry.sh) on the host end of the real node's link, `10.213.N.1:<port>`, where the
node reaches it, with TLS from a certificate of the cluster's CA and its storage in the workdir.

Who trusts the CA, and how:

* the node's containerd: `certs.d/<host:port>/hosts.toml` under the `config_path` its config names
  (`DevNode.registry_hosts_dir`), read at every pull, so the registry can start after the node;
* helm: `--ca-file <ca>` (`helm push`, `helm install oci://...`);
* BuildKit: `[registry."<host:port>"] ca = [...]` in buildkitd's config (hack/build-images.sh
  writes it from REGISTRY_CA).

No authentication: the registry is reachable only from this machine and its dev nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .binaries import HACK
from .controlplane import issue_cert
from .procs import ManagedProcess

BUILD_SCRIPT = HACK / "build-registry.sh"


def registry_binary() -> Path:
    """The registry binary, built (or found up to date) by hack/build-registry.sh."""
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip()) / "registry"


def free_port_on(address: str) -> int:
    """A TCP port on `address` that was free a moment ago."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def hosts_toml(host: str, ca_file: Path) -> str:
    """containerd's hosts.toml for `host` (host:port): pull and resolve over HTTPS, trusting ca_file."""
    return (
        f'server = "https://{host}"\n\n'
        f'[host."https://{host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{ca_file}"\n'
    )


def config(address: str, port: int, storage: Path, cert: Path, key: Path) -> dict[str, object]:
    """The registry's configuration (distribution's config.yml, as JSON)."""
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {
            "addr": f"{address}:{port}",
            "tls": {"certificate": str(cert), "key": str(key)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


class Registry:
    """`start()` builds (or reuses) the binary, issues its serving certificate from the CA in `pki`
    and serves on `address`; `stop()` ends it. `host` is `address:port`, `ca_file` the CA that
    clients must trust."""

    def __init__(self, workdir: Path, pki: Path, address: str, logs: Path) -> None:
        self.dir = workdir
        self.pki = pki
        self.address = address
        self.logs = logs
        self.port = 0
        self.proc: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def log_path(self) -> Path:
        return self.logs / "registry.log"

    def start(self, timeout: float = 60.0) -> Registry:
        binary = registry_binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        issue_cert(
            self.pki,
            "registry",
            "/CN=finetune-devcluster-registry",
            f"subjectAltName=IP:{self.address}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth",
        )
        self.port = free_port_on(self.address)
        cfg = config(
            self.address, self.port, self.dir / "storage", self.pki / "registry.crt", self.pki / "registry.key"
        )
        (self.dir / "config.yml").write_text(json.dumps(cfg, indent=1))
        # distribution v3 exports OpenTelemetry traces unless told not to (there is no collector).
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.proc = ManagedProcess("registry", [str(binary), "serve", str(self.dir / "config.yml")], self.logs, env)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until GET /v2/ answers 200 over TLS verified against the CA, or the process dies."""
        assert self.proc
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.proc.check_alive()
            try:
                with urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"the registry did not answer in {timeout}s ({last}); log {self.log_path}")

    def trust_on(self, hosts_dir: Path) -> None:
        """Make a containerd whose registry config_path is `hosts_dir` pull from here over TLS."""
        (hosts_dir / self.host).mkdir(parents=True, exist_ok=True)
        (hosts_dir / self.host / "hosts.toml").write_text(hosts_toml(self.host, self.ca_file))

    def stop(self) -> None:
        """End the registry and delete what it stored (GBs of image layers: pytest keeps the
        temporary folders of three sessions); its log stays."""
        if self.proc:
            self.proc.stop(grace=5.0)
            self.proc = None
        shutil.rmtree(self.dir / "storage", ignore_errors=True)
