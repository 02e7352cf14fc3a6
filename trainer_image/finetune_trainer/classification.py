"""Sequence classification (``method: classification``) with LoRA/QLoRA on an encoder (BERT family)
or a decoder (``AutoModelForSequenceClassification``; the pad token is set on the model config).

Records are ``{"text": ..., "label": ...}``. The label set is ``dataset.labels`` when given (a
record with any other label is refused, naming its file, line and field) or else discovered from
the data and sorted. The label map is saved next to the adapter (``label_map.json``) and carried
in the model config (``id2label``/``label2id``, so a merged model has it too).

The classification head (and any other module that the checkpoint does not have, e.g.
DistilBERT's ``pre_classifier``) is trained in full and saved with the adapter
(``modules_to_save``), so base model + adapter alone reproduce the predictions: that is what
``finetune-train evaluate --adapter DIR`` does.

Metrics: accuracy, macro-F1, per-class precision/recall/F1/support and a confusion matrix, for
the untrained head (the baseline: about chance) and after training; in ``metrics.json``,
``eval_report.md`` and ``confusion_matrix.png``. Metrics are computed with numpy (no sklearn).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from finetune_api.training import DatasetFormat, Method

from . import fetched
from .data import PreparedData, Record
from .errors import ConfigError, DataError, ModelNotFoundError, short
from .formats import formats_of
from .methods import EvaluateRequest, RunContext, TrainingMethod, check_adapter_dir, evaluate_with_adapter
from .provenance import portable_source

log = logging.getLogger("finetune_trainer")

LABEL_MAP_FILE = "label_map.json"
CONFUSION_PNG = "confusion_matrix.png"
PREDICTIONS_FILE = "eval_predictions.jsonl"
# The classification head: kept out of 4-bit quantization, trained in full and saved with the adapter.
# BERT's pooler feeds only the head (and sentence-embedding checkpoints such as all-MiniLM never
# trained it), so it counts as part of the head.
HEAD_NAMES = ("classifier", "score", "pre_classifier", "pooler")


# --- labels --------------------------------------------------------------------------------------


def _label_sort_key(labels: Iterable[str]):
    labels = list(labels)
    if labels and all(_is_int(x) for x in labels):
        return lambda x: (int(x), x)
    return lambda x: x


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def resolve_labels(data: PreparedData, given: list[str] | None) -> list[str]:
    """The label list, in id order. Given labels are checked against every record; discovered
    labels come from the training data (and a held-out split of it) and are sorted."""
    if given:
        seen: set[str] = set()
        for label in given:
            if label in seen:
                raise ConfigError(f'field "dataset.labels": {label!r} is listed twice')
            seen.add(label)
        for records, name in ((data.train, data.train_name), (data.validation, data.validation_name)):
            for r in records:
                if r.data["label"] not in seen:
                    raise DataError.at(
                        _file(name),
                        r.line,
                        "label",
                        f"unknown label {short(r.data['label'])}; dataset.labels is {short(list(given), 300)}",
                    )
        unused = [x for x in given if x not in {r.data["label"] for r in data.train}]
        if unused:
            log.warning("labels %s of dataset.labels never occur in the training data", unused)
        return list(given)
    pool = list(data.train)
    if data.report.validation_source != "file":
        pool += data.validation  # a held-out split of the same file
    counts = Counter(r.data["label"] for r in pool)
    found = set(counts)
    labels = sorted(found, key=_label_sort_key(found))
    _warn_rare_labels(data, pool, counts)
    if len(labels) < 2:
        raise DataError(
            f"{data.train_name}: every record has the label {short(labels[0] if labels else None)}; "
            "classification needs at least two labels"
        )
    if data.report.validation_source == "file":
        for r in data.validation:
            if r.data["label"] not in found:
                raise DataError.at(
                    _file(data.validation_name),
                    r.line,
                    "label",
                    f"label {short(r.data['label'])} does not occur in the training data "
                    f"(its labels: {short(labels, 300)}); fix the record or list every label in dataset.labels",
                )
    return labels


RARE_LABEL_SHARE = 0.01
RARE_LABEL_MAX = 2


def _warn_rare_labels(data: PreparedData, pool: list[Record], counts: Counter[str]) -> None:
    """Discovered labels seen in at most RARE_LABEL_MAX records (and under 1 %) are likely typos
    that became classes of their own: said in the log and the trainer's summary, with counts."""
    rare = [
        label
        for label, n in sorted(counts.items())
        if n <= RARE_LABEL_MAX and n < RARE_LABEL_SHARE * len(pool) and len(counts) > 2
    ]
    for label in rare:
        lines = ", ".join(str(r.line) for r in pool if r.data["label"] == label)
        warning = (
            f"label {short(label)} occurs in only {counts[label]} of {len(pool)} records ({data.train_name} "
            f"line {lines}) and became a class of its own; set dataset.labels to fix the label set"
        )
        log.warning("%s", warning)
        data.warnings.append(warning)


def _file(name: str) -> str:
    """``train.jsonl (held-out 10%)`` -> ``train.jsonl``: line numbers refer to the file."""
    return name.split(" (held-out", 1)[0]


def label_map(labels: list[str]) -> dict:
    return {
        "labels": list(labels),
        "id2label": {str(i): x for i, x in enumerate(labels)},
        "label2id": {x: i for i, x in enumerate(labels)},
        "problemType": "single_label_classification",
    }


def read_label_map(adapter_dir: str | Path) -> list[str]:
    path = Path(adapter_dir) / LABEL_MAP_FILE
    try:
        data = json.loads(path.read_text())
        labels = data["labels"]
        if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)):
            raise ValueError("labels must be a list of at least two strings")
        return labels
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"adapter {adapter_dir}: no {LABEL_MAP_FILE} (not a classification adapter?)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelNotFoundError(f"adapter {adapter_dir}: {LABEL_MAP_FILE} is invalid: {exc}") from None


# --- metrics -------------------------------------------------------------------------------------


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1 (over the labels that occur in truth or prediction, as sklearn does),
    per-class precision/recall/F1/support and the confusion matrix (rows: truth, columns: prediction)."""
    import numpy as np

    k = len(labels)
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (t, p), 1)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    n = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macroF1": float(f1[present].mean()) if present.any() else 0.0,
        "perClass": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        },
        "confusionMatrix": cm.tolist(),
        "labels": list(labels),
        "examples": n,
    }


def predict(model, examples: list[dict], pad_token_id: int, batch_size: int = 32) -> tuple[list[int], float]:
    """Argmax predictions (in the order of ``examples``) and the mean cross-entropy loss."""
    import torch

    if not examples:
        return [], float("nan")
    was_training = model.training
    model.eval()
    device = next(p.device for p in model.parameters())
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    preds = [0] * len(examples)
    total_loss = 0.0
    with torch.no_grad():
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            width = max(len(examples[i]["input_ids"]) for i in idx)
            ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            types = torch.zeros((len(idx), width), dtype=torch.long) if "token_type_ids" in examples[idx[0]] else None
            for row, i in enumerate(idx):
                e = examples[i]
                n = len(e["input_ids"])
                ids[row, :n] = torch.tensor(e["input_ids"])
                mask[row, :n] = 1
                if types is not None:
                    types[row, :n] = torch.tensor(e["token_type_ids"])
            kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            if types is not None:
                kwargs["token_type_ids"] = types.to(device)
            logits = model(**kwargs).logits.float()
            gold = torch.tensor([examples[i]["labels"] for i in idx], device=logits.device)
            total_loss += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
            for row, i in enumerate(idx):
                preds[i] = int(logits[row].argmax())
    if was_training:
        model.train()
    return preds, total_loss / len(examples)


def evaluate_classifier(
    model, examples: list[dict], labels: list[str], pad_token_id: int, batch_size: int = 32
) -> dict:
    return scored(predict(model, examples, pad_token_id, batch_size), examples, labels)


def scored(prediction: tuple[list[int], float], examples: list[dict], labels: list[str]) -> dict:
    """The metrics of ``predict``'s (predictions, loss) on ``examples``."""
    preds, loss = prediction
    out = {"loss": loss}
    out.update(classification_metrics([e["labels"] for e in examples], preds, labels))
    return out


# --- tokenization and model ----------------------------------------------------------------------


def encode(tokenizer, records, label_ids: dict[str, int], max_len: int, counts: dict | None = None) -> list[dict]:
    out = []
    for r in records:
        data = r.data if hasattr(r, "data") else r
        enc = tokenizer(data["text"], truncation=False)
        ids = list(enc["input_ids"])
        if len(ids) > max_len:
            enc = tokenizer(data["text"], truncation=True, max_length=max_len)
            if counts is not None:
                counts["truncated"] = counts.get("truncated", 0) + 1
        ex = {"input_ids": list(enc["input_ids"]), "labels": label_ids[data["label"]]}
        if "token_type_ids" in enc:
            ex["token_type_ids"] = list(enc["token_type_ids"])
        out.append(ex)
    return out


def load_classifier(location, labels: list[str], tokenizer, quantization=None, trust_remote_code: bool = False):
    """AutoModelForSequenceClassification with the label map in its config; returns (model, new_modules):
    the modules the checkpoint lacked (the head), which are trained in full and saved with the adapter."""
    from transformers import AutoModelForSequenceClassification

    from .models import load_model

    id2label = {i: x for i, x in enumerate(labels)}
    label2id = {x: i for i, x in enumerate(labels)}
    # transformers matches these from the start of the module path, as regexes: allow any prefix (bert.pooler).
    skip_modules = [rf"(?:.*\.)?{h}" for h in HEAD_NAMES] if quantization is not None else None
    try:
        model, info = load_model(
            AutoModelForSequenceClassification,
            location,
            quantization,
            trust_remote_code=trust_remote_code,
            skip_modules=skip_modules,
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            problem_type="single_label_classification",
            output_loading_info=True,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ConfigError(
                f"model {location.source}: its architecture has no sequence-classification head in transformers "
                f"({str(exc).splitlines()[0][:200]})"
            ) from None
        raise
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    new_modules = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", ()) if "." in k})
    return model, new_modules


def head_modules(model, new_modules: list[str]) -> list[str]:
    """Names for ``modules_to_save``: the known head names present in the model, plus the newly
    initialized modules (leaf names, as PEFT matches them by suffix)."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    out = [h for h in HEAD_NAMES if h in names]
    for m in new_modules:
        leaf = m.rsplit(".", 1)[-1]
        if leaf not in out and not leaf.isdigit():
            out.append(leaf)
    return out


# --- the method ----------------------------------------------------------------------------------


class ClassificationMethod(TrainingMethod):
    name = Method.CLASSIFICATION
    formats = formats_of(Method.CLASSIFICATION)
    peft_task_type = "SEQ_CLS"
    adapter_marker = LABEL_MAP_FILE

    def __init__(self):
        self.labels: list[str] = []
        self.new_modules: list[str] = []
        self.predictions: list[int] = []  # the latest evaluation's label ids (after training: the final one's)

    def check_compatible(self, ctx: RunContext) -> None:
        if ctx.config.evaluation.general_source:
            raise ConfigError(
                'field "evaluation.generalSource": the forgetting check measures the perplexity of a causal '
                "language model on general text; a classifier has none. Remove it for method classification"
            )
        if ctx.tokenizer.pad_token_id is None:
            raise ConfigError(f"model {ctx.config.model.source}: its tokenizer has neither a pad nor an EOS token")

    def prepare(self, ctx: RunContext) -> None:
        from datasets import Dataset

        self.labels = resolve_labels(ctx.data, ctx.config.dataset.labels)
        ids = {x: i for i, x in enumerate(self.labels)}
        counts = ctx.data.report.extra
        max_len = ctx.config.training.max_seq_length
        train = encode(ctx.tokenizer, ctx.data.train, ids, max_len, counts)
        val = encode(ctx.tokenizer, ctx.data.validation, ids, max_len, counts)
        counts["classes"] = len(self.labels)
        log.info("labels (%d): %s", len(self.labels), self.labels)
        ctx.train_dataset = Dataset.from_list(train)
        ctx.eval_dataset = Dataset.from_list(val) if val else None
        ctx.eval_examples = val

    def load_model(self, ctx: RunContext):
        model, self.new_modules = load_classifier(
            ctx.location, self.labels, ctx.tokenizer, ctx.config.peft.quantization, ctx.config.model.trust_remote_code
        )
        return model

    def modules_to_save(self, ctx: RunContext, model) -> list[str] | None:
        return head_modules(model, self.new_modules)

    def evaluate(self, ctx: RunContext, model, examples: list) -> dict:
        prediction = predict(model, examples, ctx.tokenizer.pad_token_id, max(8, ctx.config.training.micro_batch_size))
        self.predictions = prediction[0]
        return scored(prediction, examples, self.labels)

    def evaluate_file(self, request: EvaluateRequest) -> dict:
        """Reload base + adapter (head included), predict ``request.data`` and return the metrics.

        Labels come from the adapter's label_map.json; without an adapter (the untrained head) they
        are discovered from the data. Sequences are cut at 512 tokens, batches are at least 8."""
        from .models import load_tokenizer

        if request.adapter:
            labels = read_label_map(check_adapter_dir(request.adapter))
        _, records = request.records(DatasetFormat.CLASSIFICATION, deduplicate=False)
        if not request.adapter:
            found = {r.data["label"] for r in records}
            labels = sorted(found, key=_label_sort_key(found))
        ids = {x: i for i, x in enumerate(labels)}
        for r in records:
            if r.data["label"] not in ids:
                raise DataError.at(
                    Path(request.data).name,
                    r.line,
                    "label",
                    f"unknown label {short(r.data['label'])}; the adapter's labels are {short(labels, 300)}",
                )
        location = request.location()
        tokenizer = load_tokenizer(location)
        examples = encode(tokenizer, records, ids, min(request.max_seq_length, 512))
        model, _ = load_classifier(location, labels, tokenizer, request.quantization)
        batch_size = max(request.batch_size, 8)
        result = request.summary(method="classification")
        result.update(
            evaluate_with_adapter(
                model, request, lambda m: evaluate_classifier(m, examples, labels, tokenizer.pad_token_id, batch_size)
            )
        )
        return result

    def build_trainer(self, ctx: RunContext, model, common_args: dict, callbacks: list):
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        # Batches of similar lengths: padded to their longest line, randomly mixed lengths waste about
        # half of every batch on padding (log lines are 20 to 128 tokens). transformers shuffles the
        # lines, then sorts chunks of up to 50 batches from long to short lines.
        return Trainer(
            model=model,
            args=TrainingArguments(**common_args, train_sampling_strategy="group_by_length"),
            train_dataset=ctx.train_dataset,
            eval_dataset=ctx.eval_dataset,
            data_collator=DataCollatorWithPadding(ctx.tokenizer),
            processing_class=ctx.tokenizer,
            callbacks=callbacks,
        )

    def samples(self, ctx: RunContext, model) -> list[dict]:
        """Held-out lines with the gold label and the base/tuned predictions, for eval_report.md."""
        n = ctx.config.evaluation.sample_generations
        if n == 0 or not ctx.eval_examples:
            return []
        records, examples = ctx.data.validation[:n], ctx.eval_examples[:n]
        tuned, _ = predict(model, examples, ctx.tokenizer.pad_token_id)
        with model.disable_adapter():
            base, _ = predict(model, examples, ctx.tokenizer.pad_token_id)
        return [
            {"prompt": r.data["text"], "reference": r.data["label"], "base": self.labels[b], "tuned": self.labels[t]}
            for r, b, t in zip(records, base, tuned, strict=True)
        ]

    def save(self, ctx: RunContext, model, staging: Path) -> None:
        super().save(ctx, model, staging)
        lm = label_map(self.labels)
        lm["baseModel"] = portable_source(ctx.config)
        (staging / LABEL_MAP_FILE).write_text(json.dumps(lm, indent=2) + "\n")

    def finalize(self, ctx: RunContext, metrics: dict, staging: Path) -> list[str]:
        metrics["labels"] = list(self.labels)
        if self.predictions and len(self.predictions) == len(ctx.data.validation):
            dataset = ctx.config.dataset  # held-out lines of the training file, or the validation file's
            file = Path(fetched.data_file(dataset.validation_source or dataset.source)).name
            write_predictions(staging / PREDICTIONS_FILE, file, ctx.data, self.labels, self.predictions)
        final, base = metrics.get("final") or {}, metrics.get("baseline") or {}
        if final.get("confusionMatrix"):
            plot_confusion_matrices(
                staging / CONFUSION_PNG, self.labels, final["confusionMatrix"], base.get("confusionMatrix")
            )
        return report_sections(base, final, self.labels)

    def merge(self, ctx: RunContext, adapter_dir: Path, target: Path) -> None:
        from peft import PeftModel

        model, _ = load_classifier(ctx.location, self.labels, ctx.tokenizer, None, ctx.config.model.trust_remote_code)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(target), safe_serialization=True)  # config.json carries id2label/label2id
        ctx.tokenizer.save_pretrained(str(target))


def write_predictions(path: Path, file: str, data: PreparedData, labels: list[str], predictions: list[int]) -> None:
    """The final evaluation's label for each held-out line of ``file``, next to the gold label (one JSON
    object a line)."""
    rows = [
        {"file": file, "line": r.line, "text": r.data["text"], "label": r.data["label"], "predicted": labels[p]}
        for r, p in zip(data.validation, predictions, strict=True)
    ]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


# --- report --------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def report_sections(base: dict, final: dict, labels: list[str]) -> list[str]:
    """Markdown for eval_report.md: headline metrics, per-class table, confusion matrix."""
    if not final:
        return []
    lines = [
        "## Classification",
        "",
        (
            f"Labels ({len(labels)}): {', '.join(f'`{x}`' for x in labels)}. "
            f"Chance level (uniform guess): {_pct(1 / len(labels))}."
        ),
        "",
        "| metric | untrained head (baseline) | tuned |",
        "| --- | --- | --- |",
        f"| accuracy | {_pct(base.get('accuracy'))} | {_pct(final.get('accuracy'))} |",
        f"| macro-F1 | {_pct(base.get('macroF1'))} | {_pct(final.get('macroF1'))} |",
        "",
        "### Per class (tuned)",
        "",
        "| label | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label in labels:
        c = final["perClass"][label]
        lines.append(f"| {label} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']} |")
    lines += [
        "",
        "### Confusion matrix (tuned; rows: true label, columns: predicted)",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for label, row in zip(labels, final["confusionMatrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", f"![confusion matrix]({CONFUSION_PNG})", ""]
    return lines


def plot_confusion_matrices(
    path: Path, labels: list[str], final_cm: list[list[int]], base_cm: list[list[int]] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [("baseline (untrained head)", base_cm), ("tuned", final_cm)] if base_cm else [("tuned", final_cm)]
    size = max(4.0, 0.6 * len(labels) + 2.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), dpi=100, squeeze=False)
    for ax, (title, cm) in zip(axes[0], panels, strict=True):
        m = np.asarray(cm)
        acc = np.trace(m) / max(m.sum(), 1)
        ax.imshow(m, cmap="Blues")
        ax.set_title(f"{title}: accuracy {acc:.1%}")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if len(labels) <= 30:
            hi = m.max() if m.size else 0
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(
                        j,
                        i,
                        str(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if hi and m[i, j] > hi / 2 else "black",
                    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
