"""README.md next to the adapter: a Hub-style model card filled from the run's own record.

Replaces PEFT's empty template. Front matter as the Hugging Face Hub reads it (``base_model``,
``base_model_relation: adapter``, ``library_name: peft``, ``pipeline_tag``, ``tags``); then the
base model (reference, revision, weights digest, how the weights relate to the upstream ones),
the data (location, SHA-256, record counts), the method and every setting that differs from the
defaults, the metrics before and after, the forgetting check when run, limits, and how to load
and serve the adapter. Pure: :func:`render_card` takes the facts and returns the text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import yaml

from finetune_api.serving import ServingStatus
from finetune_api.training import (
    EvaluationSpec,
    Method,
    PeftSpec,
    TrainerConfig,
    TrainingSpec,
)

from .manifests import mount_path
from .provenance import BaseModelRef

METRICS = (
    ("loss", "eval loss", "lower is better"),
    ("perplexity", "perplexity", "lower is better"),
    ("accuracy", "accuracy", "higher is better"),
    ("macroF1", "macro-F1", "higher is better"),
    ("rewardMargin", "reward margin", "higher is better"),
    ("preferenceAccuracy", "preference accuracy", "higher is better"),
)
PIPELINE_TAGS = {Method.CLASSIFICATION: "text-classification"}
PEFT_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}


@dataclass(frozen=True)
class CardFacts:
    """Everything the card says, gathered by the pipeline."""

    config: TrainerConfig
    metrics: dict
    """metrics.json (baseline/final, dataset counts, forgetting, labels, steps...)."""
    base: BaseModelRef
    data_files: list[dict]
    serving: ServingStatus | None
    written: dict[str, str]
    """Serving manifests written: file name -> what it is."""


def render_card(f: CardFacts) -> str:
    sections = [
        _front_matter(f),
        _title(f),
        _base_section(f.base),
        _data_section(f),
        _method_section(f),
        _results_section(f.metrics),
        _limits_section(f),
        _load_section(f),
        _serve_section(f),
    ]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def _front_matter(f: CardFacts) -> list[str]:
    meta: dict = {}
    if f.base.hub_id:
        meta["base_model"] = f.base.hub_id
        meta["base_model_relation"] = "adapter"
    meta["library_name"] = "peft"
    meta["pipeline_tag"] = PIPELINE_TAGS.get(f.config.method, "text-generation")
    meta["tags"] = ["peft", f.config.peft.type.value, f.config.method.value, "finetune-operator"]
    return ["---", *yaml.safe_dump(meta, sort_keys=False).splitlines(), "---", ""]


def _title(f: CardFacts) -> list[str]:
    name = f.config.origin.name if f.config.origin else f.config.output.dir
    owner = f" (FineTuneJob {f.config.output.owner})" if f.config.output.owner else ""
    return [
        f"# {name}",
        "",
        f"A {PEFT_NAMES[f.config.peft.type.value]} adapter of `{f.base.reference}` trained with method "
        f"`{f.config.method.value}` by finetune-operator{owner}. The adapter alone is here "
        "(`adapter_model.safetensors`, `adapter_config.json`); the base model is loaded from its reference below.",
        "",
    ]


def _base_section(b: BaseModelRef) -> list[str]:
    lines = [
        "## Base model",
        "",
        "| | |",
        "| --- | --- |",
        f"| reference | `{b.reference}` |",
        f"| as the FineTuneJob named it | `{b.source}` |",
        f"| revision | {f'`{b.revision}`' if b.revision else 'not recorded'} |",
    ]
    if b.sha256:
        lines.append(f"| weights trained on | `{b.weights}`, SHA-256 `{b.sha256}` |")
    lines.append("")
    if b.provenance:
        lines += [f"The weights trained on: {b.provenance}.", ""]
    return lines


def _data_section(f: CardFacts) -> list[str]:
    c = f.metrics.get("dataset") or {}
    lines = [
        "## Data",
        "",
        "| file | location | SHA-256 | records read | records used |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in f.data_files:
        lines.append(
            f"| {d['role']} | `{d['source']}` | `{d['sha256']}` | {d.get('read', 'n/a')} | {d.get('used', 'n/a')} |"
        )
    lines += [
        "",
        f"Format `{c.get('format')}`; {c.get('shortDropped', 0)} empty or too short and "
        f"{c.get('duplicatesDropped', 0)} duplicate records dropped; {c.get('trainRecords')} records trained on, "
        f"{c.get('validationRecords')} held out for evaluation"
        + (
            " (a seeded split of the training file)."
            if c.get("validationSource") != "file"
            else " (the validation file)."
        ),
        "",
    ]
    if f.metrics.get("labels"):
        lines += ["Labels, in id order: " + ", ".join(f"`{x}`" for x in f.metrics["labels"]) + ".", ""]
    return lines


def changed_settings(config: TrainerConfig) -> list[tuple[str, str, str]]:
    """(field, value, default) for each peft/training/evaluation setting that differs from the default."""
    out: list[tuple[str, str, str]] = []
    sections = (("peft", config.peft, PeftSpec()), ("training", config.training, TrainingSpec()))
    for name, value, default in (*sections, ("evaluation", config.evaluation, EvaluationSpec())):
        got, want = _flat(value.to_wire()), _flat(default.to_wire())
        for key in sorted(set(got) | set(want)):
            if got.get(key) != want.get(key) and not key.endswith("Source"):
                out.append((f"{name}.{key}", _show(got.get(key)), _show(want.get(key))))
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(v: object) -> str:
    return "unset" if v is None else f"`{json.dumps(v)}`"


def _method_section(f: CardFacts) -> list[str]:
    m, p = f.metrics, f.config.peft
    lines = [
        "## Method and settings",
        "",
        f"Method `{f.config.method.value}`, {p.type.value} r={m.get('loraR', p.r)} alpha={m.get('loraAlpha', p.alpha)} "
        f"dropout={p.dropout} on `{m.get('targetModules')}`"
        + (f", base quantized to 4-bit {m['baseQuantization']}" if m.get("baseQuantization") else "")
        + f"; {m.get('trainableParameters', 0):,} trainable parameters of {m.get('totalParameters', 0):,}; "
        f"{m.get('steps')} optimizer steps, optimizer `{m.get('optimizerUsed')}`, on {m.get('device')}.",
        "",
    ]
    if f.config.model.adapter:
        lines += [
            f"Continued from the adapter `{f.config.origin.adapter if f.config.origin else f.config.model.adapter}`.",
            "",
        ]
    changed = changed_settings(f.config)
    if not changed:
        return lines + ["Every other setting is the default.", ""]
    lines += ["Settings that differ from the defaults:", "", "| setting | value | default |", "| --- | --- | --- |"]
    lines += [f"| `{k}` | {v} | {d} |" for k, v, d in changed]
    return lines + [""]


def _num(v: object) -> str:
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.4f}"
    return "n/a" if v is None else str(v)


def _results_section(m: dict) -> list[str]:
    base, final = m.get("baseline") or {}, m.get("final") or {}
    rows = [(label, hint, base.get(k), final.get(k)) for k, label, hint in METRICS if k in base or k in final]
    lines = ["## Results", ""]
    if not rows:
        return lines + ["No evaluation ran (no validation data).", ""]
    lines += [
        "On the held-out records, before training (the base model) and after (with this adapter):",
        "",
        "| metric | base model | with the adapter |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {label} ({hint}) | {_num(b)} | {_num(a)} |" for label, hint, b, a in rows]
    lines.append("")
    forgetting = m.get("forgetting")
    if forgetting:
        g = forgetting["general"]
        lines += [
            f"Forgetting check on general text (`{g['set']}`): perplexity {_num(g['perplexityBefore'])} before, "
            f"{_num(g['perplexityAfter'])} after; {forgetting['verdict']}.",
            "",
        ]
    else:
        lines += ["The forgetting check (`evaluation.generalSource`) was not run.", ""]
    return lines + ["Per-class figures, loss curves and sample outputs: `eval_report.md`, `metrics.json`.", ""]


def _limits_section(f: CardFacts) -> list[str]:
    c = f.metrics.get("dataset") or {}
    lines = [
        "## Limits",
        "",
        f"- Evaluated on {c.get('validationRecords')} held-out records of the same data source only; no benchmark, "
        "safety or bias evaluation was run.",
        f"- Inputs longer than {f.config.training.max_seq_length} tokens were truncated in training.",
    ]
    if f.base.provenance and f.base.revision is None and f.base.source.startswith("builtin:"):
        lines.append(
            f"- The base weights trained on are not the upstream `{f.base.hub_id}` checkpoint ({f.base.provenance}); "
            "loading the adapter on the upstream weights works, with slightly different outputs."
        )
    if f.metrics.get("baseQuantization"):
        lines.append(
            "- Trained on a 4-bit base: a 16-bit base with this adapter answers close to, not exactly like it."
        )
    if f.config.method is Method.CLASSIFICATION:
        lines.append("- The label set is fixed (see Data); the head was trained with the adapter (`modules_to_save`).")
    return lines + [""]


def _load_section(f: CardFacts) -> list[str]:
    b = f.base
    where = mount_path(f.serving.adapter_uri) if f.serving else "/path/to/this/directory"
    base_arg = f'"{b.hub_id}"' if b.hub_id else '"<a local copy of the base model>"'
    revision = f', revision="{b.revision}"' if b.revision else ""
    if f.config.method is Method.CLASSIFICATION:
        labels = f.metrics.get("labels") or []
        code = [
            "from peft import PeftModel",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f"labels = {labels!r}",
            "base = AutoModelForSequenceClassification.from_pretrained(",
            f"    {base_arg}{revision}, num_labels=len(labels),",
            "    id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)})",
            'model = PeftModel.from_pretrained(base, "path/to/this/directory").eval()',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")',
        ]
    else:
        auto = b.hub_id is not None
        code = (
            [
                "from peft import AutoPeftModelForCausalLM",
                "from transformers import AutoTokenizer",
                "",
                "# adapter_config.json names the base; PEFT loads it from the Hub",
                'model = AutoPeftModelForCausalLM.from_pretrained("path/to/this/directory")',
            ]
            if auto
            else [
                "from peft import PeftModel",
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                "",
                f"# the base is on the claim: {b.reference}",
                'base = AutoModelForCausalLM.from_pretrained("path/to/a/copy/of/the/base")',
                'model = PeftModel.from_pretrained(base, "path/to/this/directory")',
            ]
        ) + ['tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")']
    return [
        "## Load it with PEFT",
        "",
        "```python",
        *code,
        "```",
        "",
        "In the cluster, without network: the trainer image answers HTTP requests with it (the base resolved "
        f"through its built-in models where it is one of them): `finetune-train serve --adapter {where}` "
        "(docs/serving.md).",
        "",
    ]


def _serve_section(f: CardFacts) -> list[str]:
    lines = ["## Serve it", ""]
    s = f.serving
    if s is None:
        return lines + [
            "No serving manifests: the output is not on a claim (the trainer ran outside the operator).",
            "",
        ]
    if f.written:
        lines += ["Ready-to-apply manifests in `serving/` (see docs/serving.md for each path's prerequisites):", ""]
        lines += [f"- `serving/{name}`: {what}" for name, what in sorted(f.written.items())]
        lines.append("")
    else:
        lines += ["No serving path fits this adapter.", ""]
    facts = f"adapter `{s.adapter_uri}`, task `{s.task_type}`, LoRA rank {s.lora_rank}"
    if s.task_type != "SEQ_CLS":
        facts += "; vLLM needs `--max-lora-rank` at least the rank and `--enable-lora`"
    lines += [f"Serving facts (also in the FineTuneJob's `status.serving`): {facts}.", ""]
    if s.note:
        lines += [f"Note: {s.note}.", ""]
    return lines
