"""finetune_api on its own: the project installed without extras, at the hashed versions of
requirements/api.txt, in a fresh virtual environment (needs PyPI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "examples" / "log-intent" / "finetunejob.yaml"
NOT_API = ["kopf", "aiohttp", "torch", "transformers", "kubernetes", "finetune_devcluster"]


def pip(python: Path, *args: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.timeout(900)
def test_api_package_installs_alone_and_validates_the_example_manifest(tmp_path):
    # A copy of what the project builds from, so the in-tree build leaves the checkout alone.
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name in ("operator", "trainer_image"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    pip(python, "--require-hashes", "-r", str(ROOT / "requirements" / "api.txt"))
    pip(python, "--no-deps", "--no-build-isolation", str(src))

    probe = f"""
import importlib.util, json, yaml
from finetune_api.resource import FineTuneJobSpec
manifest = yaml.safe_load(open({str(MANIFEST)!r}))
spec = FineTuneJobSpec.model_validate(manifest["spec"])
print(json.dumps({{"model": spec.model.source,
                   "found": {{m: importlib.util.find_spec(m) is not None
                             for m in {NOT_API!r}}}}}))
"""
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["model"] == "builtin:minilm-l6"
    assert not any(out["found"].values()), out["found"]

    # `kubectl finetune upload` validates with the trainer's reader in this torch-less environment:
    # the example passes, a broken line is refused with its file:line before kubectl is ever needed.
    cli = tmp_path / "venv" / "bin" / "kubectl-finetune"
    bad = tmp_path / "train.jsonl"
    lines = (ROOT / "examples" / "log-intent" / "train.jsonl").read_text().splitlines(keepends=True)
    bad.write_text("".join(lines[:4]) + '{"text": "x"\n')
    refused = subprocess.run(
        [str(cli), "upload", str(bad), "--claim", "d"], capture_output=True, text=True, timeout=120
    )
    assert (refused.returncode, refused.stderr.strip()) == (
        3,
        "error: train.jsonl:5: not valid JSON: Expecting ',' delimiter (column 13)",
    )
