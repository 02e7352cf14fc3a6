"""Read the TrainerConfig the operator mounts at /etc/finetune/config.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from finetune_api.contract import input_sources
from finetune_api.training import DOWNLOADED_DATA, TrainerConfig

from .errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/finetune/config.json"


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(data: object, name: str = "config") -> TrainerConfig:
    """Validate a decoded config; every problem becomes one ConfigError naming the fields."""
    config = validate_config(data, name)
    check_sources(config)
    return config


def validate_config(data: object, name: str = "config") -> TrainerConfig:
    """The schema's checks only (pvc:// sources pass: ``finetune-train plan`` reads FineTuneJobs)."""
    try:
        config = TrainerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = _loc(tuple(p for p in err["loc"] if p not in ("function-after",)))
            msg = err["msg"]
            problems.append(f'field "{field}": {msg}' if field else msg)
        raise ConfigError(f"{name}: invalid trainer config: " + "; ".join(problems)) from None
    return config


def load_config(path: str | os.PathLike) -> TrainerConfig:
    """Parse the config file once; errors name the file and the field."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist (pass --config or set FINETUNE_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    if p.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p.name}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p.name}: not valid JSON: {exc}") from None
    return parse_config(data, p.name)


def check_sources(config: TrainerConfig) -> None:
    """pvc:// locations are the operator's to resolve, s3://, https:// and hf://datasets/ ones are fetched
    first (`finetune-train fetch`): the trainer only sees paths (and hf:// or builtin: models). What the
    data files' patterns admit beyond these is an absolute path."""
    for field, value in input_sources(config.to_wire()).items():
        if value.startswith("pvc://"):
            raise ConfigError(
                f'field "{field}": {value!r} is a pvc:// location, which the operator resolves to a mounted path '
                "before starting the trainer; the trainer accepts absolute paths, hf:// and builtin: sources"
            )
        if value.startswith(DOWNLOADED_DATA):
            raise ConfigError(
                f'field "{field}": {value!r} is downloaded by `finetune-train fetch` before training; the trainer '
                "reads what it fetched (an absolute path)"
            )
