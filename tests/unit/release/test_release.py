"""`make release`'s pure parts (finetune_devcluster.release): the chart's values pinned to the pushed
images, and the record of published releases the upgrade test builds from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from finetune_devcluster.release import release_values, releases, set_scalar

ROOT = Path(__file__).resolve().parents[3]
VALUES = ROOT / "charts" / "finetune-operator" / "values.yaml"
DIGESTS = {"operator": "sha256:" + "a" * 64, "trainer": "sha256:" + "b" * 64}


def test_release_values_pin_both_images_and_keep_everything_else():
    text = VALUES.read_text()
    out = release_values(text, "registry.example:5000/ft", "1.2.3", DIGESTS)
    values = yaml.safe_load(out)
    assert values["image"] | {"pullPolicy": None} == {
        "repository": "registry.example:5000/ft/operator",
        "tag": "1.2.3",
        "digest": DIGESTS["operator"],
        "pullPolicy": None,
    }
    trainer = values["trainer"]["image"]
    assert (trainer["repository"], trainer["tag"], trainer["digest"]) == (
        "registry.example:5000/ft/trainer",
        "1.2.3",
        DIGESTS["trainer"],
    )
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) == 6, changed  # three lines per image; comments and other values untouched
    original = yaml.safe_load(text)
    for key in original:
        if key not in ("image", "trainer"):
            assert values[key] == original[key], key


def test_set_scalar_follows_the_nesting_not_the_first_key_of_that_name():
    text = "image:\n  # the tag\n  tag: old\ntrainer:\n  image:\n    tag: old  # trainer's\n"
    out = set_scalar(text, ("trainer", "image", "tag"), "new")
    assert yaml.safe_load(out) == {"image": {"tag": "old"}, "trainer": {"image": {"tag": "new"}}}
    assert "  # the tag\n" in out


@pytest.mark.parametrize(
    "path, message", [(("trainer", "tag"), "trainer.tag not found"), (("trainer",), "trainer is a mapping")]
)
def test_set_scalar_refuses_what_it_cannot_set(path, message):
    with pytest.raises(ValueError, match=message):
        set_scalar("trainer:\n  image:\n    tag: x\n", path, "y")


def test_releases_record_each_version_and_full_commit_in_the_changelog():
    """hack/releases lists every release with its full commit id (the upgrade test builds the last
    one from it: a clone may lack tags), and CHANGELOG.md has a section naming both."""
    found = releases(ROOT)
    assert found and found[0][0] == "0.1.0"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    for version, commit in found:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
        assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
        assert f"## [{version}]" in changelog and commit in changelog
