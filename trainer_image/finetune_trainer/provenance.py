"""Portable references: what the artifacts name their base model and data by.

The trainer reads mounted paths (``/mnt/pvc/<claim>/...``) and package directories inside its
image; none of them resolves anywhere else. The artifacts record instead:

* the base model by its Hub id (``hf://`` sources, and the built-in models' upstream repositories)
  with the revision where known (a fetched Hub model: the commit its download resolved to), or by
  its location as the FineTuneJob named it (``pvc://<claim>/<path>``, ``s3://…``), and the SHA-256
  of the weights the adapter was trained on (a fetched model: its download record's digest);
* each data file by its location as the FineTuneJob named it, SHA-256 and record counts.

``adapter_config.json`` gets the reference as ``base_model_name_or_path`` (and ``revision``), so
PEFT's ``AutoPeftModel*.from_pretrained`` and vLLM find the base from the adapter alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune_api.training import TrainerConfig

from . import fetched
from .artifacts import sha256_file
from .models import BUILTIN_MODELS, ModelLocation, builtin_dir

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.gguf")


@dataclass(frozen=True)
class BaseModelRef:
    """The base model as the artifacts name it."""

    source: str
    """As the FineTuneJob named it: builtin:…, hf://…, pvc://… or a path in the image."""
    reference: str
    """A reference that resolves outside the trainer: hf://<org>/<name>, pvc://<claim>/<path> (a path in the image
    for image paths, which resolve nowhere else)."""
    hub_id: str | None = None
    revision: str | None = None
    sha256: str | None = None
    """Of ``weights`` (one file), or of the SHA256SUMS-style list of several weight files."""
    weights: str | None = None
    """The weights the digest covers: a file name, or "N files"."""
    provenance: str | None = None
    """How these weights relate to the upstream ones (built-in models)."""

    @property
    def name_or_path(self) -> str:
        """``base_model_name_or_path`` for adapter_config.json: the Hub id, else the reference."""
        return self.hub_id or self.reference

    @property
    def on_hub(self) -> bool:
        return self.hub_id is not None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def portable_source(config: TrainerConfig) -> str:
    """``model.source`` as the FineTuneJob wrote it (the mounted path outside the operator)."""
    return config.origin.model if config.origin else config.model.source


def base_model_ref(config: TrainerConfig, location: ModelLocation, commit_hash: str | None = None) -> BaseModelRef:
    """The base model's portable reference; ``commit_hash``: the Hub commit transformers loaded (hf://)."""
    source = portable_source(config)
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        builtin = BUILTIN_MODELS[name]
        digest = sha256_file(builtin_dir(name, builtin) / builtin.weights_file)
        same = builtin.hub_sha256 is not None and digest == builtin.hub_sha256
        note = f"{builtin.provenance}" + (
            f", byte-identical to the Hub repository's {builtin.weights_file} at revision {builtin.hub_revision}"
            if same
            else ""
        )
        return BaseModelRef(
            source=source,
            reference=f"hf://{builtin.hub_id}",
            hub_id=builtin.hub_id,
            revision=builtin.hub_revision if same else None,
            sha256=digest,
            weights=builtin.weights_file,
            provenance=note,
        )
    record = fetched.record_of(config.model.source)
    if record is not None:  # downloaded by the run's fetch step (hf://, s3://)
        hub_id = source.removeprefix("hf://") if source.startswith("hf://") else None
        what = f"{record.file_count} files (sha256 of their sha256sum list)"
        return BaseModelRef(source, source, hub_id, record.commit or record.revision, record.sha256, what)
    if source.startswith("hf://"):
        hub_id = source.removeprefix("hf://")
        return BaseModelRef(source, source, hub_id=hub_id, revision=commit_hash or config.model.revision)
    weights = weights_digest(Path(location.path), location.gguf_file)
    return BaseModelRef(source, source, sha256=weights[1] if weights else None, weights=weights[0] if weights else None)


def weights_digest(directory: Path, gguf_file: str | None = None) -> tuple[str, str] | None:
    """(what, sha256) of a local model's weights: one file's digest, or for several files the digest of
    their ``<sha256>  <name>`` lines (sorted by name); None when the directory has no weight files."""
    if gguf_file:
        files = [directory / gguf_file]
    else:
        files = sorted({p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern) if p.is_file()})
    if not files:
        return None
    if len(files) == 1:
        return files[0].name, sha256_file(files[0])
    lines = "".join(f"{sha256_file(p)}  {p.name}\n" for p in files)
    return f"{len(files)} files", hashlib.sha256(lines.encode()).hexdigest()


def make_portable(adapter_dir: Path, ref: BaseModelRef) -> dict:
    """Point adapter_config.json at the base by its portable reference; returns the updated config."""
    path = adapter_dir / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = ref.name_or_path
    cfg["revision"] = ref.revision
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg


def dataset_files(config: TrainerConfig, counts: dict) -> list[dict]:
    """Each data file: its portable location, SHA-256 and the records the run read from it and used.

    ``counts``: the curation report (metrics.json's ``dataset``)."""
    origin = config.origin
    files = [
        ("train", config.dataset.source, origin.dataset if origin else None),
        ("validation", config.dataset.validation_source, origin.validation_dataset if origin else None),
        ("general", config.evaluation.general_source, origin.general_dataset if origin else None),
    ]
    records = {
        "train": {"read": counts.get("recordsRead"), "used": counts.get("trainRecords")},
        "validation": {"read": counts.get("validationRead"), "used": counts.get("validationRecords")},
    }
    out = []
    for role, path, uri in files:
        if path:
            entry = {"role": role, "source": uri or path, "sha256": sha256_file(Path(fetched.data_file(path)))}
            entry.update({k: v for k, v in records.get(role, {}).items() if v is not None})
            out.append(entry)
    return out
