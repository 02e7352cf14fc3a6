"""OCI image archives: reading which image one holds, and writing small single-layer ones.

The dev node's own images (the pause sandbox image, a busybox test image) are written here from
files on this machine, reproducibly (fixed mtimes and owners), so the same inputs give the same
digest and a warm node skips the import. Archives are OCI image layouts in a tar file, the ref in
index.json as ``io.containerd.image.name``: what ``ctr images import`` reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_ANNOTATION = "io.containerd.image.name"


@dataclass(frozen=True)
class Entry:
    """One file system entry of a layer: a file (``source`` on this machine), a dir, or a symlink."""

    path: str
    source: Path | None = None
    mode: int = 0o755
    link: str = ""


def read_index(archive: Path) -> tuple[str, str]:
    """(ref, manifest digest) of the single image in an OCI archive, from its index.json."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive}: no index.json (not an OCI image layout archive)")
        index = json.load(member)
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ValueError(f"{archive}: expected one image in index.json, found {len(manifests)}")
    ref = (manifests[0].get("annotations") or {}).get(REF_ANNOTATION)
    if not ref:
        raise ValueError(f"{archive}: index.json names no image ({REF_ANNOTATION})")
    return str(ref), str(manifests[0]["digest"])


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mode, info.mtime, info.uid, info.gid = entry.mode, 0, 0, 0
            if entry.link:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            elif entry.source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = entry.source.read_bytes()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(
    archive: Path, ref: str, entries: list[Entry], entrypoint: list[str], env: tuple[str, ...] = ("PATH=/bin",)
) -> str:
    """Write a one-layer linux/amd64 image to ``archive``; return its manifest digest."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = blob(_layer(entries))
    config = blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": entrypoint, "Env": list(env), "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
            },
            sort_keys=True,
        ).encode()
    )
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, **config},
                "layers": [{"mediaType": LAYER, **layer}],
            },
            sort_keys=True,
        ).encode()
    )
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                "mediaType": MANIFEST,
                **manifest,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {REF_ANNOTATION: ref, "org.opencontainers.image.ref.name": ref.rpartition(":")[2]},
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in blobs.items()},
    }
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    partial.replace(archive)
    return str(manifest["digest"])
