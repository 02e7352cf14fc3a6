"""``finetune-train plan``: the memory plan of a job, from outside the cluster, before submitting it.

    finetune-train plan --config job.yaml [--model-config config.json] [--gpu-memory 80GiB]

``--config`` is a FineTuneJob manifest (its ``spec``), its spec alone, or a TrainerConfig. The model's
config comes from ``model.source`` (a directory, ``builtin:`` or ``hf://``: one small file) or from
``--model-config`` (needed for ``pvc://`` models). ``--gpu-memory`` is the GPU to plan for (bytes or
a quantity: ``80GiB``, ``81559Mi``, ``80G``), else this machine's CUDA device. Prints the plan as
JSON (with a one-line ``summary``); exits 14 (InsufficientGPUMemory) when it does not fit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from finetune_api.protocol import ExitCode
from finetune_api.training import TrainerConfig

from . import planning
from .config import load_config, validate_config
from .errors import ConfigError

UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
SPEC_PARTS = ("method", "model", "peft", "training")


def parse_bytes(text: str) -> int:
    """Bytes from ``85520809984``, ``80GiB``, ``81559Mi`` or ``80G``."""
    m = QUANTITY.match(text)
    if not m or m.group(2) not in UNITS:
        raise ConfigError(f"--gpu-memory {text!r}: expected bytes or a quantity like 80GiB or 81559Mi")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def job_config(path: Path) -> TrainerConfig:
    """A TrainerConfig from a TrainerConfig file or a FineTuneJob (manifest or spec): the parts the
    plan needs, with placeholders for the dataset and output it does not read."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a FineTuneJob or a trainer config (a mapping)")
    if "output" in data and "dir" in (data.get("output") or {}):
        return load_config(path)
    spec = data.get("spec", data)
    parts = {k: spec[k] for k in SPEC_PARTS if k in spec}
    parts |= {"dataset": {"source": "/plan/data.jsonl"}, "output": {"dir": "/plan/out"}}
    return validate_config(parts, path.name)


def cmd_plan(args) -> int:
    config = job_config(Path(args.config))
    if args.model_config:
        try:
            model_cfg = json.loads(Path(args.model_config).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--model-config {args.model_config}: {exc}") from None
    elif config.model.source.startswith("pvc://"):
        raise ConfigError(f"model {config.model.source} is on a claim: pass its config.json with --model-config")
    else:
        from .models import model_config

        model_cfg = model_config(config.model)
    target = planning.Target.detect()
    if args.gpu_memory:
        target = planning.Target(parse_bytes(args.gpu_memory), "--gpu-memory", True, target.host_bytes)
    plan = planning.plan_run(config, model_cfg, target)
    print(json.dumps({**plan.status.to_wire(), "summary": planning.one_line(plan)}, indent=2))
    return int(ExitCode.INSUFFICIENT_GPU_MEMORY) if plan.fits is False else 0
