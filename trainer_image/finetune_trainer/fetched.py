"""What `finetune-train fetch` left for the trainer: an entry directory with its FetchRecord.

A FineTuneJob's downloaded sources reach the trainer's config as fetched entries (see
finetune_api.runconfig.fetch_plans): a model as its directory, a dataset as the entry directory,
whose record names the data file. The records also go into metrics.json and eval_report.md, so
the artifacts say which bytes they were trained from.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from finetune_api.protocol import FETCH_RECORD_FILE, FetchRecord
from finetune_api.training import TrainerConfig

from .errors import ConfigError


def record_of(path: str | None) -> FetchRecord | None:
    """The FetchRecord of a fetched entry directory (None for any other path)."""
    if not path or not (Path(path) / FETCH_RECORD_FILE).is_file():
        return None
    try:
        return FetchRecord.model_validate_json((Path(path) / FETCH_RECORD_FILE).read_text())
    except (OSError, ValidationError) as exc:
        raise ConfigError(f"{path}: the fetched entry's record is unreadable ({exc.__class__.__name__})") from None


def data_file(path: str) -> str:
    """A dataset source as a file: a fetched entry becomes the file its record names."""
    record = record_of(path)
    if record is None:
        return path
    if not record.file:
        raise ConfigError(f"{path}: the fetched entry of {record.source} holds a directory, not a data file")
    return str(Path(path) / record.file)


def sources(config: TrainerConfig) -> list[dict[str, object]]:
    """The fetched model and data files of a run, as recorded when they were downloaded and checked."""
    out: list[dict[str, object]] = []
    for field, path in (
        ("model.source", config.model.source),
        ("dataset.source", config.dataset.source),
        ("dataset.validationSource", config.dataset.validation_source),
    ):
        record = record_of(path)
        if record is not None:
            keep = {"source", "revision", "commit", "sha256", "size_bytes", "file_count", "verified_with"}
            out.append(
                {"field": field, **record.model_dump(mode="json", by_alias=True, include=keep, exclude_none=True)}
            )
    return out
