"""The hashed lock files (requirements/*.txt, `make lock`) against what the project declares.

A dependency added to or re-ranged in a pyproject.toml without `make lock` fails here, before an
install or an image build does.
"""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.lockfiles import applies, pyproject, read_lock, read_requirements_in

# lock -> (extras of the root project, other pyprojects whose dependencies it also locks)
LOCKS: dict[str, tuple[list[str], list[str]]] = {
    "api": ([], []),
    "operator": (["operator"], []),
    "trainer": (["trainer"], []),
    "dev": (["operator", "trainer", "dev"], ["devcluster/pyproject.toml"]),
}


def declared(lock: str) -> list[Requirement]:
    extras, others = LOCKS[lock]
    project = pyproject()["project"]
    reqs = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    reqs += [r for other in others for r in pyproject(other)["project"]["dependencies"]]
    return [Requirement(r) for r in reqs] + read_requirements_in("build")


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_declared_dependency_within_its_range(lock):
    pins = read_lock(lock)
    for req in filter(applies, declared(lock)):
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"requirements/{lock}.txt lacks {req}: run `make lock`"
        assert req.specifier.contains(pin.version, prereleases=True), (
            f"requirements/{lock}.txt pins {pin.name}=={pin.version}, outside {req}: run `make lock`"
        )


def test_image_locks_pin_the_versions_the_dev_environment_tests():
    dev = read_lock("dev")
    for lock in ("api", "operator", "trainer"):
        for name, pin in read_lock(lock).items():
            assert dev[name].version == pin.version, f"{lock}.txt: {name}=={pin.version}, dev.txt: {dev[name].version}"


def test_operator_lock_has_no_torch_and_no_kubernetes_client():
    assert not {"torch", "transformers", "peft", "trl", "bitsandbytes", "kubernetes"} & set(read_lock("operator"))


def test_trainer_lock_has_no_operator_dependencies():
    assert not {"kopf", "kubernetes", "prometheus-client"} & set(read_lock("trainer"))


def test_demo_model_lock_holds_the_trainers_builtin_models():
    from finetune_trainer.models import BUILTIN_MODELS

    pins = read_lock("demo-models")
    assert set(pins) == {canonicalize_name(m.package) for m in BUILTIN_MODELS.values()}
    assert {(canonicalize_name(r.name), str(r.specifier)) for r in read_requirements_in("demo-models")} == {
        (name, f"=={pin.version}") for name, pin in pins.items()
    }


def test_build_lock_input_is_what_both_pyprojects_build_with():
    build_in = {str(r) for r in read_requirements_in("build")}
    for path in ("pyproject.toml", "devcluster/pyproject.toml"):
        assert set(pyproject(path)["build-system"]["requires"]) == build_in, path
