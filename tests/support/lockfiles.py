"""The hashed lock files under requirements/ (written by `make lock`), read for the tests."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK_DIR = ROOT / "requirements"

# Where the images and the dev environment run: CPython 3.11 on Linux x86_64.
TARGET_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]


def applies(req: Requirement) -> bool:
    return req.marker is None or req.marker.evaluate(TARGET_ENV)


def read_lock(name: str) -> dict[str, Pin]:
    """The pins of requirements/NAME.txt that apply to TARGET_ENV, by canonical name."""
    path = LOCK_DIR / f"{name}.txt"
    pins: dict[str, Pin] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line.split("--hash=")[0].strip())
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or not hashes:
            raise ValueError(f"{path.name}: {req} is not pinned with == and hashes")
        if applies(req):
            pins[canonicalize_name(req.name)] = Pin(canonicalize_name(req.name), specs[0].version, hashes)
    return pins


def read_requirements_in(name: str) -> list[Requirement]:
    """The requirements listed in requirements/NAME.in."""
    lines = (LOCK_DIR / f"{name}.in").read_text().splitlines()
    return [Requirement(ln) for ln in (raw.split("#")[0].strip() for raw in lines) if ln]


def pyproject(path: str = "pyproject.toml") -> dict:
    return tomllib.loads((ROOT / path).read_text())
