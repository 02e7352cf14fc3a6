"""Run a command in an image of an OCI archive (hack/build-images.sh) as a container.

The image's layers are unpacked into a root filesystem (whiteouts applied) and runc, the one
hack/build-buildkit.sh builds, runs the command with the image's user, environment, working
directory and entrypoint, the way the trainer pod runs under Pod Security `restricted`: a
read-only root, /tmp a tmpfs, no capabilities, no new privileges and no network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGES = ROOT / "hack" / "build-images.sh"
BUILD_BUILDKIT = ROOT / "hack" / "build-buildkit.sh"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Image:
    index: dict
    manifest: dict
    config: dict
    """The image config's `config` object: User, Env, Entrypoint, Cmd, WorkingDir."""
    rootfs: Path | None
    """The unpacked layers (None when only inspected)."""


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    member = archive.extractfile(name)
    assert member is not None, f"{name}: not a file in the archive"
    return member


def _blob(archive: tarfile.TarFile, digest: str) -> IO[bytes]:
    return _member(archive, f"blobs/{digest.replace(':', '/')}")


def _apply_layer(layer: tarfile.TarFile, rootfs: Path) -> None:
    for member in layer:
        path = rootfs / member.name.lstrip("./").lstrip("/")
        if path.name == OPAQUE:
            for child in path.parent.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        elif path.name.startswith(WHITEOUT):
            hidden = path.with_name(path.name.removeprefix(WHITEOUT))
            if hidden.is_dir() and not hidden.is_symlink():
                shutil.rmtree(hidden)
            elif hidden.exists() or hidden.is_symlink():
                hidden.unlink()
        else:
            if (path.exists() or path.is_symlink()) and not (member.isdir() and path.is_dir()):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            layer.extract(member, rootfs, filter="fully_trusted")  # our own image: absolute symlinks stay


def inspect(archive_path: Path) -> Image:
    """The archive's only image: its index, manifest and config (rootfs not unpacked)."""
    with tarfile.open(archive_path) as archive:
        index = json.load(_member(archive, "index.json"))
        (entry,) = index["manifests"]
        manifest = json.load(_blob(archive, entry["digest"]))
        config = json.load(_blob(archive, manifest["config"]["digest"]))
    return Image(index=index, manifest=manifest, config=config["config"], rootfs=None)


def unpack(archive_path: Path, dest: Path) -> Image:
    """The archive's only image with its layers unpacked into dest/rootfs."""
    image = replace(inspect(archive_path), rootfs=dest / "rootfs")
    image.rootfs.mkdir(parents=True)
    with tarfile.open(archive_path) as archive:
        for layer in image.manifest["layers"]:
            with tarfile.open(fileobj=_blob(archive, layer["digest"]), mode="r|*") as stream:
                _apply_layer(stream, image.rootfs)
    return image


def runc() -> Path:
    bin_dir = subprocess.run(
        ["bash", str(BUILD_BUILDKIT), "--print-bin-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(bin_dir) / "runc"


def _user(spec: str) -> dict:
    uid, _, gid = (spec or "0").partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {spec!r}: the tests expect numeric ids"
    return {"uid": int(uid), "gid": int(gid or 0)}


def run(image: Image, args: list[str], *, entrypoint: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run args (after the image's entrypoint unless entrypoint=False) in a fresh container."""
    assert image.rootfs is not None, "unpack the image first"
    bundle = image.rootfs.parent / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    state = bundle / "state"
    runc_bin = str(runc())
    subprocess.run([runc_bin, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    command = (image.config.get("Entrypoint") or []) + args if entrypoint else args
    spec["root"] = {"path": str(image.rootfs), "readonly": True}
    spec["hostname"] = "image-test"
    spec["process"].update(
        terminal=False,
        args=command,
        env=image.config.get("Env", []),
        cwd=image.config.get("WorkingDir") or "/",
        user=_user(image.config.get("User", "")),
        noNewPrivileges=True,
        capabilities={k: [] for k in ("bounding", "effective", "permitted", "inheritable", "ambient")},
    )
    spec["mounts"].append(
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=1g"],
        }
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    container = f"image-test-{uuid.uuid4().hex[:12]}"
    try:
        return subprocess.run(
            [runc_bin, "--root", str(state), "run", "--bundle", str(bundle), container],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        subprocess.run([runc_bin, "--root", str(state), "delete", "--force", container], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)
