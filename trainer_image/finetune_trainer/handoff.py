"""The hand-off after training: a portable adapter_config.json, the serving manifests, the model card.

Runs in the staging directory right after the adapter and reports are written, before the run
is published: everything here lands atomically with the adapter (see ``artifacts.py``).
"""

from __future__ import annotations

import logging

from finetune_api.serving import ServingStatus

from .manifests import DESCRIPTIONS, AdapterFacts, plan_serving, render, serving_status
from .methods import RunContext
from .modelcard import CardFacts, render_card
from .provenance import base_model_ref, dataset_files, make_portable

log = logging.getLogger("finetune_trainer")

SERVING_DIR = "serving"
CARD = "README.md"


def write_handoff(ctx: RunContext, model, metrics: dict) -> ServingStatus | None:
    """Rewrite the staged adapter_config.json with the base's portable reference, write serving/ and
    README.md; record the base model, the data files and the serving facts in ``metrics``."""
    config, staging = ctx.config, ctx.out.staging
    base = base_model_ref(config, ctx.location, commit_hash(model))
    facts = AdapterFacts.from_adapter_config(make_portable(staging, base))
    data_files = dataset_files(config, metrics.get("dataset") or {})
    plan = plan_serving(config, base, facts)
    files = render(plan) if plan else {}
    for name, text in files.items():
        (staging / SERVING_DIR).mkdir(exist_ok=True)
        (staging / SERVING_DIR / name).write_text(text)
    status = serving_status(plan, list(plan.runtimes) if files else []) if plan else None
    metrics["baseModel"] = base.to_json()
    metrics["dataFiles"] = data_files
    if status is not None:
        metrics["serving"] = status.to_wire()
        log.info("serving: %s", ", ".join(f"{SERVING_DIR}/{n}" for n in files) or f"no manifests ({status.note})")
    written = {name: DESCRIPTIONS[name] for name in files}
    card = CardFacts(config, metrics, base, data_files, status, written)
    (staging / CARD).write_text(render_card(card))
    return status


def commit_hash(model) -> str | None:
    """The Hub commit transformers loaded the base from (None for local weights)."""
    config = getattr(model, "config", None)
    value = getattr(config, "_commit_hash", None)
    return value if isinstance(value, str) else None
