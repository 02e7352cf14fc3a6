"""etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback ports."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .binaries import ensure_binaries
from .procs import ManagedProcess

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port on `address` that was free a moment ago."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _new_p256_key(key_file: str) -> list[str]:
    """`openssl req` arguments for a new unencrypted P-256 key written to key_file."""
    return ["-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", key_file]


def issue_cert(pki: Path, name: str, subject: str, ext: str) -> None:
    """Write pki/name.{key,crt}: a P-256 key and a cert signed by pki/ca (`ext`: openssl extensions)."""
    (pki / f"{name}.ext").write_text(ext + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl(
        "req",
        "-new",
        *_new_p256_key(str(pki / f"{name}.key")),
        "-out",
        str(pki / f"{name}.csr"),
        "-subj",
        subject,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(pki / f"{name}.csr"),
        "-CA",
        str(pki / "ca.crt"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        "365",
        "-out",
        str(pki / f"{name}.crt"),
        "-extfile",
        str(pki / f"{name}.ext"),
    )


def make_pki(pki: Path) -> None:
    """CA, admin client cert (O=system:masters), the apiserver's client cert for kubelets
    (O=system:masters), service-account key pair. The serving cert: `serving_cert`."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-new",
        *_new_p256_key(str(pki / "ca.key")),
        "-out",
        str(pki / "ca.crt"),
        "-days",
        "3650",
        "-subj",
        "/CN=finetune-devcluster-ca",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    client = "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"
    issue_cert(pki, "admin", "/O=system:masters/CN=admin", client)
    issue_cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "sa.key"))
    _openssl("ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def serving_cert(pki: Path, address: str) -> None:
    """The apiserver serving cert for 127.0.0.1, `address`, the `kubernetes` Service IP and names;
    made again when `address` changed since the last start (pki/apiserver.address)."""
    marker = pki / "apiserver.address"
    if (pki / "apiserver.crt").exists() and marker.exists() and marker.read_text() == address:
        return
    sans = ",".join(
        dict.fromkeys(
            [
                "IP:127.0.0.1",
                f"IP:{address}",
                f"IP:{SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
    )
    issue_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth",
    )
    marker.write_text(address)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str = "admin") -> None:
    """A kubeconfig for the client cert pki/<user>.crt, certificates embedded (JSON is valid YAML)."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "finetune-devcluster",
        "clusters": [
            {"name": "finetune-devcluster", "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")},
            }
        ],
        "contexts": [{"name": "finetune-devcluster", "context": {"cluster": "finetune-devcluster", "user": user}}],
    }
    path.write_text(json.dumps(config, indent=2))


class ControlPlane:
    """A single-node control plane whose state lives in `workdir`; stop() removes every process.

    The apiserver listens on `address` (loopback unless a dev node gave it the host end of its
    link, an address its pods reach through the `kubernetes` Service); the other components
    on 127.0.0.1."""

    def __init__(self, workdir: Path | str, address: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir).resolve()
        self.address = address
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.port = self.kcm_port = self.scheduler_port = 0
        self.server = ""
        self.bin_dir = Path()
        self.procs: list[ManagedProcess] = []
        self.ready_seconds = 0.0

    def start(self, timeout: float = 60.0) -> ControlPlane:
        """Start all components and wait until they are healthy and the default ServiceAccount exists."""
        self.bin_dir = ensure_binaries()
        t0 = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "apiserver-kubelet-client.crt").exists():
            make_pki(self.pki)
        serving_cert(self.pki, self.address)
        self.port = free_port()
        self.server = f"https://{self.address}:{self.port}"
        write_kubeconfig(self.kubeconfig, self.server, self.pki)
        try:
            self._start_components(timeout)
            self._wait(timeout, t0)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        return self

    def _spawn(self, name: str, *args: str) -> ManagedProcess:
        proc = ManagedProcess(name, [str(self.bin_dir / name), *args], self.logs)
        self.procs.append(proc)
        return proc

    def _start_components(self, timeout: float) -> None:
        pki, kc = self.pki, str(self.kubeconfig)
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        )
        self._poll(f"{etcd_url}/health", timeout, "etcd", tls=False)
        # Loopback cannot be a Service endpoint: without a node, the `kubernetes` Service has none.
        reconciler = "none" if self.address.startswith("127.") else "lease"
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--endpoint-reconciler-type={reconciler}",
            "--profiling=false",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        )
        self._poll(f"{self.server}/readyz", timeout, "kube-apiserver")
        auth = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        self.kcm_port, self.scheduler_port = free_port(), free_port()
        self._spawn(
            "kube-controller-manager",
            *auth,
            f"--secure-port={self.kcm_port}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--node-monitor-period=1s",
            # pre-bound claims wait for this sync (15 s by default), not for an event
            "--pvclaimbinder-sync-period=1s",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
        )
        self._spawn("kube-scheduler", *auth, f"--secure-port={self.scheduler_port}")

    def _wait(self, timeout: float, t0: float) -> None:
        self._poll(f"https://127.0.0.1:{self.kcm_port}/healthz", timeout, "kube-controller-manager", verify=False)
        self._poll(f"https://127.0.0.1:{self.scheduler_port}/healthz", timeout, "kube-scheduler", verify=False)
        self._poll(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", timeout, "default ServiceAccount"
        )

    def _poll(self, url: str, timeout: float, what: str, tls: bool = True, verify: bool = True) -> None:
        """Wait for `url` to answer 200, failing early when a component died."""
        ctx: ssl.SSLContext | None = None
        if tls:
            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
            if verify:
                ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
            else:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for proc in self.procs:
                proc.check_alive()
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{what} not ready after {timeout}s ({url}: {last}); logs in {self.logs}")

    def stop(self) -> None:
        """Stop the components in reverse order of start."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
