"""The dev cluster's real nodes: kubelet, containerd (runc, CNI bridge), kube-proxy and a fake GPU
device plugin, in their own PID, mount and network namespaces on this machine. Needs root.

A cluster has one (`dev-node`) or more (`dev-node-2`, ...: `DevCluster.start_nodes`), each laid
out as below with an index of its own; the others' pod ranges and the apiserver's address are
routed through the node's link, and this machine forwards between the links (`forward`: a setting
of those interfaces only).

Layout (N: a per-node index, so several dev clusters and nodes can run on one machine):

* PID namespace: PID 1 is `nodeinit` under `unshare --kill-child`; stopping the node kills it,
  and the kernel then kills every node process and container. Mounts made by the node (volumes,
  container root file systems) live in its private mount namespace and vanish with it.
* Network: the node's namespace has one veth link to this machine, 10.213.N.2 (node) <->
  10.213.N.1 (host end, where the apiserver listens), and the CNI bridge `cni0` for pods,
  10.214.N.0/24, routed from the host through the link. No default route and no NAT: pods reach
  the apiserver through the `kubernetes` Service (kube-proxy, iptables mode, in the node's
  namespace) and nothing outside this machine.
* Paths the kubelet and containerd hard-code are bind mounts inside the node's mount namespace:
  /var/lib/kubelet, /var/log/pods, /var/log/containers, /run/containerd (from `<workdir>/`).
  The empty mount points are created on the host if missing.
* cgroups (v1 or v2): the kubelet's cgroupRoot is /finetune-node-N, removed when the node stops.
* containerd's root (images, unpacked layers) is shared by the dev nodes of this machine under the
  cache (`<cache>/node/containerd`; `containerd-2` for the second node of a cluster, ...), one
  node at a time (a lock); a node that finds it taken uses a root of its own in its workdir, and
  imports its images there again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from . import oci
from .binaries import bin_dir, ensure_node_binaries, node_dir, runc_path
from .controlplane import ControlPlane, issue_cert, write_kubeconfig
from .procs import ManagedProcess

NODE_NAME = "dev-node"
NODE_LABEL = "finetune.dev/dev-node"  # "true" on the first real node (the one every test uses), "extra" on the others
REAL_NODE_LABEL = "finetune.dev/real-node"  # "true" on every real node: what a run over several of them selects
GPU_PRODUCT = "dev-fake-gpu"
GPU_MEMORY_MIB = 4096
"""What the fake GPU advertises in its `nvidia.com/gpu.memory` label (MiB, as GPU feature discovery does)."""
PRELOADED_IMAGE_PREFIXES = ("localhost/finetune-devcluster", "localhost/finetune-operator")
"""Where the images imported into the node's containerd are named (never pulled: no registry there)."""
SANDBOX_IMAGE = "localhost/finetune-devcluster/pause:v1.35.4"
BUSYBOX_IMAGE = "localhost/finetune-devcluster/busybox:dev"
COREDNS_IMAGE = "localhost/finetune-devcluster/coredns:v1.14.7"
COREDNS_MANIFESTS = Path(__file__).with_name("coredns.yaml")
DNS_IP = "10.0.0.10"  # the kube-dns Service: in controlplane.SERVICE_CIDR
CONTAINERD_NAMESPACE = "k8s.io"
BIND_MOUNTS = {
    "kubelet": "/var/lib/kubelet",
    "pod-logs": "/var/log/pods",
    "container-logs": "/var/log/containers",
    "containerd-run": "/run/containerd",
}
NET_LOCK = Path("/run/lock/finetune-devcluster-net.lock")  # also guards HOST_SYSCTLS
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _effective_capabilities() -> int:
    """This process's effective capability set (a bit per capability)."""
    match = re.search(r"CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text())
    if match is None:
        raise RuntimeError("/proc/self/status has no CapEff line")
    return int(match[1], 16)


# Without CAP_SYS_RESOURCE (some sandboxes drop it) no process may lower its oom_score_adj: the
# kubelet and kube-proxy keep 0 and containerd raises negative container values to its own (0).
HAVE_SYS_RESOURCE = bool(_effective_capabilities() & (1 << 24))
# Kernel settings the kubelet sets at start (not namespaced): restored when the node stops.
# The machine's own values are recorded by the first dev node that starts while none runs, and
# written back by the last one to stop.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
HOST_SYSCTLS = Path("/run/finetune-devcluster-sysctls.json")


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _live_indexes() -> set[int]:
    """The indexes N of the dev nodes on this machine: their links (10.213.N.1) vanish with them."""
    return {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.1/", _run("ip", "-4", "-o", "addr"))}


def node_name(ordinal: int) -> str:
    """`dev-node`, `dev-node-2`, `dev-node-3`, ..."""
    return NODE_NAME if ordinal == 1 else f"{NODE_NAME}-{ordinal}"


def _cgroup_hierarchies() -> list[Path]:
    """The cgroup hierarchies of this machine: the v2 root, or every v1 one (hybrid: and v2's)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return [d for d in sorted(CGROUP_ROOT.iterdir()) if (d / "cgroup.procs").exists()]


class DevNode:
    """The real node. `prepare()` (namespaces and link, before the control plane starts: the
    apiserver listens on `host_ip`), then `start(control_plane)`, then `stop()`."""

    def __init__(self, workdir: Path, logs: Path, gpus: int = 1, ordinal: int = 1) -> None:
        self.dir = workdir
        self.logs = logs
        self.gpus = gpus
        self.ordinal = ordinal
        """1 for the first real node of a cluster (``dev-node``), 2 for ``dev-node-2``, ..."""
        self.name = node_name(ordinal)
        self.index = 0
        self.init: ManagedProcess | None = None
        self.pid = 0
        self.procs: list[ManagedProcess] = []
        self.root_lock: IO[str] | None = None
        self.containerd_root = Path()

    # --- addresses --------------------------------------------------------------------------
    @property
    def host_ip(self) -> str:
        return f"10.213.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.213.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.214.{self.index}.0/24"

    @property
    def host_if(self) -> str:
        """The host end of the node's link."""
        return f"ftnode{self.index}"

    @property
    def cgroup_root(self) -> str:
        return f"finetune-node-{self.index}"

    @property
    def socket(self) -> Path:
        """containerd's socket, as seen from this machine."""
        return self.dir / "containerd-run" / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's registry `config_path`: `<host:port>/hosts.toml` files there (written by
        `Registry.trust_on`) say how to reach a registry and which CA to trust; read at each pull."""
        return self.dir / "certs.d"

    def nsenter(self, *argv: str) -> list[str]:
        """`argv` run inside the node's namespaces (PID, mount, network)."""
        return ["nsenter", f"--target={self.pid}", "--pid", "--mount", "--net", "--", *argv]

    def run(self, *argv: str) -> str:
        return _run(*self.nsenter(*argv))

    # --- namespaces, link, mounts, cgroups -----------------------------------------------------
    def prepare(self) -> DevNode:
        """Create the node's namespaces and its link to this machine."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            with self._net_lock():  # index choice and link creation, one cluster at a time
                self.index = min(set(range(1, 250)) - _live_indexes())
                self.init = ManagedProcess(
                    "node-init",
                    [
                        "unshare",
                        "--pid",
                        "--fork",
                        "--kill-child",
                        "--mount",
                        "--propagation",
                        "private",
                        "--net",
                        "--mount-proc",
                        sys.executable,
                        "-m",
                        "finetune_devcluster.nodeinit",
                    ],
                    self.logs,
                )
                self.pid = self._init_pid()
                self._link()
            self._mounts()
            self._cgroups()
            (self.dir / "init.pid").write_text(str(self.pid))
        except BaseException:
            self.stop()
            raise
        return self

    def _init_pid(self, timeout: float = 10.0) -> int:
        """The host PID of nodeinit (the child of `unshare`), once it runs."""
        assert self.init
        children = Path(f"/proc/{self.init.popen.pid}/task/{self.init.popen.pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.init.check_alive()
            pids = children.read_text().split() if children.exists() else []
            if pids and "nodeinit" in Path(f"/proc/{pids[0]}/cmdline").read_text(errors="replace"):
                return int(pids[0])
            time.sleep(0.02)
        raise TimeoutError(f"the node's PID 1 did not start in {timeout}s; log in {self.logs}/node-init.log")

    def _link(self) -> None:
        host_if = self.host_if
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", str(self.pid))
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        for argv in (
            ("ip", "link", "set", "lo", "up"),
            ("ip", "addr", "add", f"{self.node_ip}/24", "dev", "eth0"),
            ("ip", "link", "set", "eth0", "up"),
        ):
            _run("nsenter", f"--target={self.pid}", "--net", "--", *argv)
        _run("ip", "route", "add", self.pod_cidr, "via", self.node_ip, "dev", host_if)
        # Forwarding between the link and the pod bridge, bridged pod traffic through iptables
        # (kube-proxy's Service rules): settings of the node's network namespace only.
        _run(
            "nsenter",
            f"--target={self.pid}",
            "--net",
            "--mount",
            "--",
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1",
        )

    def route(self, destination: str) -> None:
        """Route `destination` (another node's pod range, the apiserver's address) from the node
        through its link to this machine, which forwards it (see `forward`)."""
        self.run("ip", "route", "replace", destination, "via", self.host_ip, "dev", "eth0")

    def forward(self) -> None:
        """Let this machine forward what arrives on the node's link (to another node's link): a
        setting of this one interface, gone with it; the machine's `ip_forward` stays as it is."""
        Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/forwarding").write_text("1")

    def _mounts(self) -> None:
        for name, target in BIND_MOUNTS.items():
            (self.dir / name).mkdir(parents=True, exist_ok=True)
            Path(target).mkdir(parents=True, exist_ok=True)
            self.run("mount", "--bind", str(self.dir / name), target)

    def _cgroups(self) -> None:
        self._remove_cgroups()  # left by a dev cluster that died with this index (its link is gone)
        for path in (h / self.cgroup_root for h in _cgroup_hierarchies()):
            path.mkdir(exist_ok=True)
            if path.parent.name == "cpuset":  # a v1 cpuset child starts empty: give it the parent's
                for key in ("cpuset.cpus", "cpuset.mems"):
                    (path / key).write_text((path.parent / key).read_text())

    # --- components ---------------------------------------------------------------------------
    def start(self, cp: ControlPlane, timeout: float = 120.0) -> None:
        """Start containerd, the kubelet, the device plugin and kube-proxy; import the node's own
        images. Returns once containerd answers; `DevCluster` waits for the Node to be Ready."""
        nd, k8s = ensure_node_binaries(), bin_dir()
        self._certs(cp)
        self.containerd_root = self._take_containerd_root()
        self._write_configs(cp, nd)
        self._spawn("containerd", str(nd / "bin" / "containerd"), f"--config={self.dir / 'containerd.toml'}")
        self._wait_containerd(timeout)
        self.crictl("rmp", "--all", "--force")  # pods a crashed dev cluster left in the shared root
        self.prune_images()
        for archive in self._own_images(nd):
            self.load_image(archive)
        with self._net_lock():
            if not HOST_SYSCTLS.exists():  # else recorded by a node that runs, or crashed, before
                HOST_SYSCTLS.write_text(json.dumps({k: (Path("/proc/sys") / k).read_text() for k in KUBELET_SYSCTLS}))
        labels = {NODE_LABEL: "true" if self.ordinal == 1 else "extra", REAL_NODE_LABEL: "true"}
        if self.gpus:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": GPU_PRODUCT,
                "nvidia.com/gpu.count": str(self.gpus),
                "nvidia.com/gpu.memory": str(GPU_MEMORY_MIB),
            }
        self._spawn(
            "kubelet",
            str(k8s / "kubelet"),
            f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.node_ip}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
            "--v=1",
        )
        if self.gpus:
            self._spawn("gpu-device-plugin", str(nd / "bin" / "fake-gpu-device-plugin"), f"--count={self.gpus}")
        self._spawn("kube-proxy", str(k8s / "kube-proxy"), f"--config={self.dir / 'kube-proxy.yaml'}", "--v=1")

    def _spawn(self, name: str, *argv: str) -> None:
        path = f"{node_dir() / 'bin'}:{bin_dir()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self.procs.append(ManagedProcess(name, self.nsenter(*argv), self.logs, env={"PATH": path}))

    def check_alive(self) -> None:
        for proc in [p for p in (self.init,) if p] + self.procs:
            proc.check_alive()

    def _cert_name(self, component: str) -> str:
        """pki/<name>.{key,crt}: `kubelet` for the first node, `kubelet-dev-node-2` for the second."""
        return component if self.ordinal == 1 else f"{component}-{self.name}"

    def _certs(self, cp: ControlPlane) -> None:
        pki = cp.pki
        client = "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"
        issue_cert(pki, self._cert_name("kubelet"), f"/O=system:nodes/CN=system:node:{self.name}", client)
        issue_cert(pki, self._cert_name("kube-proxy"), "/CN=system:kube-proxy", client)
        issue_cert(
            pki,
            self._cert_name("kubelet-serving"),
            f"/CN={self.name}",
            f"subjectAltName=IP:{self.node_ip},DNS:{self.name}\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth",
        )
        for user in ("kubelet", "kube-proxy"):
            write_kubeconfig(self.dir / f"{user}.kubeconfig", cp.server, pki, self._cert_name(user))

    def _take_containerd_root(self) -> Path:
        slot = "containerd" if self.ordinal == 1 else f"containerd-{self.ordinal}"
        shared = node_dir() / slot
        shared.mkdir(parents=True, exist_ok=True)
        lock = open(node_dir() / f"{slot}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            print(
                f"{self.name}: {shared} is in use by another dev cluster; this node imports its images into "
                f"its own root ({self.dir / 'containerd-root'})",
                flush=True,
            )
            return self.dir / "containerd-root"
        self.root_lock = lock
        return shared

    def _write_configs(self, cp: ControlPlane, nd: Path) -> None:
        pki = cp.pki
        (self.dir / "cni").mkdir(exist_ok=True)
        self.registry_hosts_dir.mkdir(exist_ok=True)
        (self.dir / "cni" / "10-finetune-devcluster.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "finetune-devcluster",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": self.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.dir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        (self.dir / "crictl.yaml").write_text(
            f"runtime-endpoint: unix://{self.socket}\nimage-endpoint: unix://{self.socket}\n"
        )
        cri = "plugins.'io.containerd.cri.v1"
        (self.dir / "containerd.toml").write_text(f"""version = 3
root = '{self.containerd_root}'
state = '/run/containerd'
[grpc]
  address = '/run/containerd/containerd.sock'
[{cri}.images']
  snapshotter = 'overlayfs'
  # like the imports (--discard-unpacked-layers): a pulled layer's blob goes once it is unpacked
  discard_unpacked_layers = true
  [{cri}.images'.pinned_images]
    sandbox = '{SANDBOX_IMAGE}'
  [{cri}.images'.registry]
    config_path = '{self.registry_hosts_dir}'
[{cri}.runtime']
  enable_cdi = false
  restrict_oom_score_adj = {str(not HAVE_SYS_RESOURCE).lower()}
  [{cri}.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [{cri}.runtime'.containerd.runtimes.runc.options]
      BinaryName = '{runc_path()}'
      SystemdCgroup = false
  [{cri}.runtime'.cni]
    bin_dirs = ['{nd / "cni-bin"}']
    conf_dir = '{self.dir / "cni"}'
""")
        (self.dir / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{self.cgroup_root}",
                    "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
                    "address": self.node_ip,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "tlsCertFile": str(pki / f"{self._cert_name('kubelet-serving')}.crt"),
                    "tlsPrivateKeyFile": str(pki / f"{self._cert_name('kubelet-serving')}.key"),
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(pki / "ca.crt")},
                    },
                    "authorization": {"mode": "Webhook"},
                    "clusterDNS": [DNS_IP],
                    "clusterDomain": "cluster.local",
                    "resolvConf": "/etc/resolv.conf",
                    "maxPods": 30,
                    "serializeImagePulls": False,
                    **({} if HAVE_SYS_RESOURCE else {"oomScoreAdj": 0}),
                    "runtimeRequestTimeout": "10m",
                    # a shared development machine: evict late, and never garbage-collect the images
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    # The images imported into containerd cannot be pulled (localhost/ has no registry).
                    # Kubernetes 1.35's default (NeverVerifyPreloadedImages, KEP-2535) re-pulls an image
                    # once the kubelet has pulled the same digest under another name, as a registry test
                    # does: every later pod of the imported name then failed ErrImagePull.
                    "imagePullCredentialsVerificationPolicy": "NeverVerifyAllowlistedImages",
                    "preloadedImagesVerificationAllowlist": [f"{prefix}/*" for prefix in PRELOADED_IMAGE_PREFIXES],
                },
                indent=1,
            )
        )
        (self.dir / "kube-proxy.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy.kubeconfig")},
                    "hostnameOverride": self.name,
                    "mode": "iptables",
                    "clusterCIDR": self.pod_cidr,
                    **({} if HAVE_SYS_RESOURCE else {"oomScoreAdj": 0}),
                    "metricsBindAddress": "127.0.0.1:10249",
                    "healthzBindAddress": "127.0.0.1:10256",
                    "nodePortAddresses": ["primary"],
                    # sysctls kube-proxy would set are not writable from a network namespace: leave them
                    "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
                },
                indent=1,
            )
        )

    def _wait_containerd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.socket.exists() and subprocess.run(self.ctr("version"), capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"containerd did not answer in {timeout}s; log in {self.logs}/containerd.log")

    # --- images -------------------------------------------------------------------------------
    def ctr(self, *args: str) -> list[str]:
        return [
            str(node_dir() / "bin" / "ctr"),
            f"--address={self.socket}",
            f"--namespace={CONTAINERD_NAMESPACE}",
            *args,
        ]

    def crictl(self, *args: str) -> str:
        return _run(str(node_dir() / "bin" / "crictl"), f"--config={self.dir / 'crictl.yaml'}", *args)

    def _images(self) -> dict[str, str]:
        """Image name -> manifest digest, as containerd lists them."""
        rows = [line.split() for line in _run(*self.ctr("images", "ls")).splitlines()[1:] if line.strip()]
        return {row[0]: row[2] for row in rows}

    def image_digest(self, ref: str) -> str | None:
        """The manifest digest `ref` points at in the node's containerd, None when absent."""
        return self._images().get(ref)

    def prune_images(self) -> None:
        """Remove the image-ID records (`sha256:...`, made by the CRI plugin) of images no name
        points at any more, e.g. the previous build of a re-imported image: containerd's garbage
        collector then frees their unpacked layers (GBs for the trainer image)."""
        images = self._images()
        named = {digest for name, digest in images.items() if not name.startswith("sha256:")}
        stale = [name for name, digest in images.items() if name.startswith("sha256:") and digest not in named]
        if stale:
            _run(*self.ctr("images", "rm", "--sync", *stale))

    def load_image(self, archive: Path) -> str:
        """Import an OCI archive (one image) unless its digest is there already; return its ref."""
        ref, digest = oci.read_index(archive)
        if self.image_digest(ref) == digest:
            return ref
        t0 = time.monotonic()
        _run(
            *self.ctr(
                "images", "import", "--platform=linux/amd64", "--local", "--discard-unpacked-layers", str(archive)
            )
        )
        self.prune_images()
        print(
            f"{self.name}: imported {ref} ({archive.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - t0:.1f}s",
            flush=True,
        )
        return ref

    def _own_images(self, nd: Path) -> list[Path]:
        """The sandbox (pause) image, the cluster DNS image and a busybox test image, written
        from this machine's files."""
        images = self.dir / "images"
        images.mkdir(exist_ok=True)
        pause, coredns = images / "pause.tar", images / "coredns.tar"
        oci.write_archive(pause, SANDBOX_IMAGE, [oci.Entry("pause", nd / "bin" / "pause")], ["/pause"])
        oci.write_archive(coredns, COREDNS_IMAGE, [oci.Entry("coredns", nd / "bin" / "coredns")], ["/coredns"])
        busybox = shutil.which("busybox") or "/bin/busybox"
        if not Path(busybox).exists():
            raise RuntimeError("busybox is missing: run `make node-deps` (Debian package busybox-static)")
        applets = _run(busybox, "--list").split()
        entries = [oci.Entry(d) for d in ("bin", "etc", "proc", "sys", "dev", "var")]
        entries += [oci.Entry("tmp", mode=0o1777), oci.Entry("bin/busybox", Path(busybox))]
        entries += [oci.Entry(f"bin/{a}", link="busybox") for a in applets if a != "busybox"]
        box = images / "busybox.tar"
        oci.write_archive(box, BUSYBOX_IMAGE, entries, ["/bin/sh"])
        return [pause, coredns, box]

    def dns_manifests(self) -> str:
        """CoreDNS's ServiceAccount, RBAC, Corefile, Deployment and the kube-dns Service (YAML)."""
        return string.Template(COREDNS_MANIFESTS.read_text()).substitute(IMAGE=COREDNS_IMAGE, DNS_IP=DNS_IP)

    # --- stop ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Kill every node process (PID 1 first: the kernel takes the rest), remove the cgroups,
        restore the kernel settings the kubelet changed, and release the shared containerd root
        (or delete this node's own one)."""
        if self.init:
            self.init.stop(grace=5.0)
        for proc in self.procs:
            proc.stop(grace=5.0)
        self.init, self.procs = None, []
        if self.index:
            self._remove_cgroups()
            self._restore_sysctls()
        if self.root_lock:
            self.root_lock.close()
            self.root_lock = None
        elif self.containerd_root == self.dir / "containerd-root":  # GBs no later node would use
            shutil.rmtree(self.containerd_root, ignore_errors=True)

    def _remove_cgroups(self, timeout: float = 30.0) -> None:
        """rmdir the cgroup tree, deepest first, once its last process has exited."""
        deadline = time.monotonic() + timeout
        for top in (h / self.cgroup_root for h in _cgroup_hierarchies()):
            if not top.exists():
                continue
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                while True:
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)

    @staticmethod
    @contextlib.contextmanager
    def _net_lock() -> Iterator[None]:
        NET_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(NET_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _restore_sysctls(self) -> None:
        """The last dev node to stop writes back the machine's kernel settings (a running node is
        one whose link exists: links vanish with their node, crashed or not)."""
        with self._net_lock():
            if HOST_SYSCTLS.exists() and not _live_indexes() - {self.index}:
                for key, value in json.loads(HOST_SYSCTLS.read_text()).items():
                    (Path("/proc/sys") / key).write_text(value)
                HOST_SYSCTLS.unlink()
