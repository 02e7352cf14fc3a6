"""Both images built for real from their Dockerfiles (hack/build-images.sh: BuildKit built from its Go
module, local Debian bookworm bases), then run as containers with runc (image_runner).

Needs root, the Go module proxy, the Debian mirror and PyPI. A cold build takes tens of minutes
(the trainer's torch and CUDA wheels); a warm one, with unchanged inputs, seconds.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from support.images import BUILD_IMAGES, ROOT, Image, inspect, run, unpack
from support.lockfiles import read_lock

pytestmark = pytest.mark.timeout(5400)

IMAGES = ("operator", "trainer")
UNCOMPRESSED_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEV_ONLY = ["finetune_devcluster", "kubernetes", "pytest"]
PROJECT = "finetune-operator"  # the distribution of finetune_api, finetune_operator and finetune_trainer
INSTALLER = {"pip"}  # the venv's own installer, the one distribution besides the locks and the project


@pytest.fixture(scope="session")
def archives() -> dict[str, Path]:
    build = subprocess.run(["bash", str(BUILD_IMAGES)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    images_dir = Path(
        subprocess.run(
            ["bash", str(BUILD_IMAGES), "--print-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    return {name: images_dir / f"{name}.tar" for name in IMAGES}


def unpacked(archive: Path, dest: Path) -> Iterator[Image]:
    """The image unpacked under dest for the module's tests, then removed: pytest keeps the last
    three sessions' temporary folders, and the trainer's root filesystem alone is 6.6 GB."""
    try:
        yield unpack(archive, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture(scope="module")
def operator_image(archives, tmp_path_factory) -> Iterator[Image]:
    yield from unpacked(archives["operator"], tmp_path_factory.mktemp("operator-image"))


@pytest.fixture(scope="module")
def trainer_image(archives, tmp_path_factory) -> Iterator[Image]:
    yield from unpacked(archives["trainer"], tmp_path_factory.mktemp("trainer-image"))


def python(image: Image, code: str) -> str:
    """Run python code in the image (as its user, read-only root) and return its stdout."""
    result = run(image, ["python", "-c", code], entrypoint=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def installed(image: Image) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    return {canonicalize_name(name): version for name, version in json.loads(python(image, code)).items()}


def assert_installs_exactly(image: Image, locks: dict) -> None:
    """Every pin of the locks at its version, the project, and nothing else (the Dockerfile installs
    the hashed locks, then the project without dependencies)."""
    versions = installed(image)
    for name, pin in locks.items():
        assert versions.get(name) == pin.version, f"{name}: image has {versions.get(name)}, lock {pin.version}"
    assert set(versions) - set(locks) - INSTALLER == {PROJECT}, sorted(set(versions) - set(locks))


def python_of(image: Image) -> tuple[list[int], str]:
    """(version, sys.prefix) of the image's `python`."""
    found = json.loads(python(image, "import json, sys; print(json.dumps([sys.version_info[:2], sys.prefix]))"))
    return found[0], found[1]


def importable(image: Image, modules: list[str]) -> dict[str, bool]:
    code = (
        "import importlib.util, json;"
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {modules!r}}}))"
    )
    return json.loads(python(image, code))


@pytest.mark.parametrize("name", IMAGES)
def test_archive_is_one_linux_amd64_image_with_its_ref_and_uncompressed_layers(name, archives):
    """The format the dev node imports (hack/build-images.sh's header)."""
    image = inspect(archives[name])
    (entry,) = image.index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == f"localhost/finetune-operator/{name}:dev"
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert {layer["mediaType"] for layer in image.manifest["layers"]} == {UNCOMPRESSED_LAYER}


# --- the operator image -------------------------------------------------------------------------


def test_operator_entrypoint_runs_as_nonroot_from_a_read_only_root(operator_image):
    assert operator_image.config["Entrypoint"] == ["finetune-operator"]
    assert operator_image.config["User"] in ("65532", "65532:65532")
    result = run(operator_image, ["--help"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--all-namespaces" in result.stdout
    ids = run(operator_image, ["id", "-u"], entrypoint=False)
    assert ids.stdout.strip() == "65532"
    # the chart's podSecurityContext runs it as the same user
    values = yaml.safe_load((ROOT / "charts" / "finetune-operator" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_operator_image_has_the_operator_lock_and_no_torch_or_dev_cluster(operator_image):
    found = importable(
        operator_image, ["kopf", "finetune_operator", "finetune_api", "torch", "transformers", *DEV_ONLY]
    )
    assert found == {
        "kopf": True,
        "finetune_operator": True,
        "finetune_api": True,
        "torch": False,
        "transformers": False,
        **{m: False for m in DEV_ONLY},
    }
    assert not (operator_image.rootfs / "opt/venv/bin/finetune-devcluster").exists()
    assert python_of(operator_image) == ([3, 11], "/opt/venv")
    assert_installs_exactly(operator_image, read_lock("operator"))


# --- the trainer image --------------------------------------------------------------------------


def test_trainer_entrypoint_runs_as_the_operators_trainer_user(trainer_image):
    from finetune_operator import builders

    assert trainer_image.config["Entrypoint"] == ["finetune-train"]
    assert trainer_image.config["User"].split(":")[0] == str(builders.RUN_AS_USER)
    result = run(trainer_image, ["--help"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--config" in result.stdout
    ids = run(trainer_image, ["id", "-u"], entrypoint=False)
    assert ids.stdout.strip() == str(builders.RUN_AS_USER)


def test_trainer_image_has_the_trainer_lock_and_no_operator_or_dev_cluster(trainer_image):
    found = importable(trainer_image, ["torch", "peft", "trl", "finetune_trainer", "kopf", *DEV_ONLY])
    assert found == {
        "torch": True,
        "peft": True,
        "trl": True,
        "finetune_trainer": True,
        "kopf": False,
        **{m: False for m in DEV_ONLY},
    }
    assert not (trainer_image.rootfs / "opt/venv/bin/finetune-devcluster").exists()
    assert python_of(trainer_image) == ([3, 11], "/opt/venv")
    # the demo models come with the build argument hack/build-images.sh passes (WITH_DEMO_MODELS=true)
    assert_installs_exactly(trainer_image, read_lock("trainer") | read_lock("demo-models"))


def test_trainer_image_loads_the_builtin_demo_model_offline(trainer_image):
    """`builtin:minilm-l6` (what the demo trains) resolves inside the image and its weights load, with
    no network and a read-only root."""
    code = """
from finetune_api.training import ModelSpec
from finetune_trainer.models import resolve_source
from transformers import AutoModel
location = resolve_source(ModelSpec(source="builtin:minilm-l6"))
model = AutoModel.from_pretrained(location.path)
print(location.path, model.config.hidden_size, sum(p.numel() for p in model.parameters()))
"""
    path, hidden, params = python(trainer_image, code).split()
    assert path.startswith("/opt/venv/") and hidden == "384" and 22_000_000 < int(params) < 23_500_000, (path, params)


def test_build_is_skipped_when_the_inputs_are_unchanged(archives):
    before = {name: archive.stat().st_mtime_ns for name, archive in archives.items()}
    again = subprocess.run(["bash", str(BUILD_IMAGES)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {name: archive.stat().st_mtime_ns for name, archive in archives.items()} == before
    for name in IMAGES:
        assert f"{name}: up to date" in again.stdout, shlex.quote(again.stdout)
