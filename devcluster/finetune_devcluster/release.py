"""`make release REGISTRY=... VERSION=...`: both images and the chart into an OCI registry, as users
get them.

1. hack/build-images.sh in push mode: BuildKit builds Dockerfile.operator and Dockerfile.trainer
   and pushes them straight to REGISTRY/operator:VERSION and REGISTRY/trainer:VERSION (the trainer
   with the built-in demo models, as `make images` builds it); their manifest digests come back.
2. The chart, copied, with its values pointing at those images, pinned by digest
   (`image.digest`, `trainer.image.digest`; repository and tag set too, for people reading it),
   then `helm package` and `helm push` to oci://REGISTRY/charts (REGISTRY/charts/finetune-operator:VERSION).

VERSION must be the chart's version in the checkout being released (bump Chart.yaml, pyproject.toml
and the operator's default trainer image together, then release). `--source DIR` releases another
checkout (e.g. a worktree of an older release) with this checkout's build script.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .binaries import HACK, bin_dir

ROOT = HACK.parent
CHART_DIR = Path("charts") / "finetune-operator"
IMAGES = ("operator", "trainer")
# values.yaml paths of each image's repository, tag and digest
IMAGE_VALUES = {"operator": ("image",), "trainer": ("trainer", "image")}
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Released:
    """What a release pushed: the images (ref -> digest) and the chart's OCI reference."""

    version: str
    images: dict[str, str]  # name -> "REGISTRY/name@sha256:..."
    chart: str  # oci://REGISTRY/charts/finetune-operator
    chart_digest: str  # of the chart's OCI manifest (what a signature signs)


def set_scalar(text: str, path: tuple[str, ...], value: str) -> str:
    """`text` (YAML) with the scalar at `path` replaced by `value`, every other line (comments
    included) kept as it is. Block mappings only, the form of the chart's values.yaml."""
    stack: list[tuple[int, str]] = []
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _KEY.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if tuple(k for _, k in stack) == path:
            rest = match["rest"].split(" #", 1)[0].strip()
            if not rest:
                raise ValueError(f"{'.'.join(path)} is a mapping, not a scalar")
            lines[i] = f"{match['indent']}{match['key']}: {json.dumps(value)}\n"
            return "".join(lines)
    raise ValueError(f"{'.'.join(path)} not found")


def get(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for key in path:
        node = node[key]
    return node


def release_values(text: str, registry: str, version: str, digests: dict[str, str]) -> str:
    """The chart's values.yaml with both images at REGISTRY/NAME:VERSION pinned by digest."""
    wanted: dict[tuple[str, ...], str] = {}
    for name, prefix in IMAGE_VALUES.items():
        wanted[(*prefix, "repository")] = f"{registry}/{name}"
        wanted[(*prefix, "tag")] = version
        wanted[(*prefix, "digest")] = digests[name]
    for path, value in wanted.items():
        text = set_scalar(text, path, value)
    values = yaml.safe_load(text)
    for path, value in wanted.items():  # the edit did what it should, and YAML still parses
        assert get(values, path) == value, f"{'.'.join(path)}: {get(values, path)!r} != {value!r}"
    return text


def chart_version(source: Path) -> str:
    return str(yaml.safe_load((source / CHART_DIR / "Chart.yaml").read_text())["version"])


def helm(*args: str, ca_file: Path | None = None) -> str:
    """helm from the project's cache (hack/build-k8s-binaries.sh), else from PATH."""
    binary = bin_dir() / "helm"
    argv = [str(binary) if binary.exists() else "helm", *args, *(["--ca-file", str(ca_file)] if ca_file else [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"helm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout + done.stderr


def push_images(
    source: Path, registry: str, version: str, ca_file: Path | None, compression: str, base_images: str, out: Path
) -> dict[str, str]:
    """Build and push both images from `source` with hack/build-images.sh; name -> digest."""
    env = {
        **os.environ,
        "SOURCE_DIR": str(source),
        "PUSH_TO": registry,
        "PUSH_TAG": version,
        "PUSH_DIGEST_DIR": str(out),
        "PUSH_COMPRESSION": compression,
        "BASE_IMAGES": base_images,
        **({"REGISTRY_CA": str(ca_file)} if ca_file else {}),
    }
    subprocess.run(["bash", str(HACK / "build-images.sh"), *IMAGES], check=True, env=env)
    return {name: (out / f"{name}.digest").read_text().strip() for name in IMAGES}


def package_chart(source: Path, registry: str, version: str, digests: dict[str, str], out: Path) -> Path:
    """`helm package` a copy of source's chart whose values pin the pushed images."""
    chart = out / "chart" / "finetune-operator"
    shutil.copytree(source / CHART_DIR, chart)
    values = chart / "values.yaml"
    values.write_text(release_values(values.read_text(), registry, version, digests))
    helm("lint", str(chart))
    helm("package", str(chart), "--destination", str(out))
    return out / f"finetune-operator-{version}.tgz"


def release(
    registry: str,
    version: str,
    source: Path = ROOT,
    ca_file: Path | None = None,
    compression: str = "gzip",
    base_images: str = "upstream",
    pushed: dict[str, str] | None = None,
) -> Released:
    """Push both images and the chart of `source` (whose chart version must be `version`).
    `pushed` (name -> digest): the images are in the registry already (a multi-platform build
    elsewhere, docs/development.md): only the chart is packaged and pushed."""
    registry = registry.rstrip("/")
    found = chart_version(source)
    if found != version:
        raise SystemExit(f"release: VERSION {version} is not the chart's version ({found} in {source / CHART_DIR})")
    with tempfile.TemporaryDirectory(prefix="finetune-release-") as tmp:
        out = Path(tmp)
        digests = pushed or push_images(source, registry, version, ca_file, compression, base_images, out)
        package = package_chart(source, registry, version, digests, out)
        pushed_chart = helm("push", str(package), f"oci://{registry}/charts", ca_file=ca_file)
    match = re.search(r"^Digest: (sha256:[0-9a-f]{64})$", pushed_chart, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"helm push printed no digest: {pushed_chart}")
    images = {name: f"{registry}/{name}@{digest}" for name, digest in digests.items()}
    return Released(version, images, f"oci://{registry}/charts/finetune-operator", match[1])


def releases(root: Path = ROOT) -> list[tuple[str, str]]:
    """hack/releases: (version, full commit id) of each published release, oldest first."""
    rows = [line.split() for line in (root / "hack" / "releases").read_text().splitlines()]
    return [(row[0], row[1]) for row in rows if row and not row[0].startswith("#")]


def export_commit(commit: str, dest: Path, root: Path = ROOT) -> Path:
    """The files of `commit` of this repository (`git archive`) in `dest`: an older release's
    source to build, without touching the repository's worktrees."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True)
    if archive.returncode:
        message = archive.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git archive {commit} failed (a clone without that commit?): {message}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", required=True, help="e.g. ghcr.io/finetune-operator or 10.213.1.1:5000/ft")
    parser.add_argument("--version", required=True, help="the chart's version, e.g. 0.2.0")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to release (default: this one)")
    parser.add_argument("--ca-file", type=Path, help="CA of the registry's TLS certificate (BuildKit and helm)")
    parser.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "uncompressed"])
    parser.add_argument(
        "--base-images",
        default="upstream",
        choices=["local", "upstream"],
        help="upstream: the Dockerfiles' own bases (pulled); local: the Debian stand-ins of `make images`",
    )
    parser.add_argument(
        "--pushed",
        action="append",
        default=[],
        metavar="NAME=sha256:...",
        help="operator=DIGEST and trainer=DIGEST: the images are pushed already; package and push the chart only",
    )
    args = parser.parse_args(argv)
    pushed = dict(item.split("=", 1) for item in args.pushed)
    if pushed and (
        set(pushed) != set(IMAGES) or not all(re.fullmatch(r"sha256:[0-9a-f]{64}", d) for d in pushed.values())
    ):
        parser.error("--pushed needs operator=sha256:<64 hex> and trainer=sha256:<64 hex>")
    done = release(
        args.registry, args.version, args.source, args.ca_file, args.compression, args.base_images, pushed or None
    )
    for name, ref in done.images.items():
        print(f"{name}: {ref}")
    print(f"chart: {done.chart} --version {done.version} (digest {done.chart_digest})")


if __name__ == "__main__":
    main(sys.argv[1:])
