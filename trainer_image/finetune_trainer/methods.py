"""The seam between the shared pipeline and a training method (sft, classification, dpo).

A method is a module exposing a :class:`TrainingMethod` subclass, registered by dotted path in
:data:`METHODS` (imported lazily, so a method's extra dependencies load only when used). The
pipeline calls, in order::

    load_tokenizer -> check_compatible -> prepare -> load_model -> [PEFT wrap, by the pipeline]
    -> evaluate (baseline) -> build_trainer -> trainer.train -> evaluate (final) -> samples
    -> save (+ merge)

``finetune-train evaluate`` goes through the same seam: :func:`evaluate_command` picks the method
from the data's record format (or the adapter's marker file) and calls its ``evaluate_file``.

Everything else (config, data reading/curation/split via the format registry in ``data.py``,
model sources, PEFT, progress, checkpoints and resume, atomic artifacts, summary and exit
codes) is shared and lives in the pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_api.training import DatasetFormat, Method, ModelSpec, QuantizationSpec, TrainerConfig

from .artifacts import OutputDir
from .data import PreparedData, Record, curate, read_records
from .errors import ConfigError, ModelNotFoundError
from .formats import FORMATS
from .models import ModelLocation, load_causal_lm, load_tokenizer, resolve_source
from .progress import ProgressReporter


@dataclass
class RunContext:
    """State handed from step to step of one run."""

    config: TrainerConfig
    out: OutputDir
    reporter: ProgressReporter
    data: PreparedData
    location: ModelLocation
    tokenizer: Any = None
    train_dataset: Any = None
    """What the method's Trainer trains on (a datasets.Dataset)."""
    eval_dataset: Any = None
    """What the method's Trainer evaluates on during training (None without validation data)."""
    eval_examples: list = field(default_factory=list)
    """Validation examples in the form the method's ``evaluate`` takes."""
    general_examples: list = field(default_factory=list)
    """Tokenized general-text examples for the forgetting check (``evaluation.generalSource``)."""
    metrics: dict = field(default_factory=dict)
    plan: Any = None
    """The memory plan (``planning.Plan``), None for a model the memory model cannot read."""


@dataclass(frozen=True)
class EvaluateRequest:
    """``finetune-train evaluate``: a base model (plus an adapter) on a dataset file."""

    model: str
    data: str
    adapter: str | None = None
    format: DatasetFormat = DatasetFormat.AUTO
    max_seq_length: int = 1024
    batch_size: int = 4
    compare_base: bool = False
    """Also evaluate the base model with the adapter disabled (as ``result["base"]``)."""
    quantize: bool = False
    """Load the base model in 4-bit, as QLoRA trained it."""

    def location(self) -> ModelLocation:
        return resolve_source(ModelSpec(source=self.model))

    @property
    def quantization(self) -> QuantizationSpec | None:
        return QuantizationSpec() if self.quantize else None

    def records(
        self, fmt: DatasetFormat, allowed: AbstractSet[DatasetFormat] | None = None, deduplicate: bool = True
    ) -> tuple[DatasetFormat, list[Record]]:
        """The data file's records (validated, empty ones and optionally duplicates dropped)."""
        fmt, records = read_records(self.data, fmt, allowed)
        return fmt, curate(records, fmt, 1, deduplicate)[0]

    def summary(self, **extra) -> dict:
        return {"model": self.model, "adapter": self.adapter, "data": self.data, **extra}


class TrainingMethod:
    """Base class: defaults suit causal-LM methods; override what differs."""

    name: Method
    formats: frozenset[DatasetFormat] = frozenset()
    """Record formats this method trains on (``auto`` detection is limited to these)."""
    peft_task_type: str = "CAUSAL_LM"
    adapter_marker: str | None = None
    """A file that only this method's adapters have (``evaluate`` picks the method by it)."""

    def load_tokenizer(self, ctx: RunContext):
        return load_tokenizer(ctx.location, ctx.config.model.trust_remote_code)

    def check_compatible(self, ctx: RunContext) -> None:
        """Right after the tokenizer loads, before the model: e.g. chat data needs a chat template."""

    def prepare(self, ctx: RunContext) -> None:
        """Tokenize ``ctx.data`` into ctx.train_dataset / ctx.eval_dataset / ctx.eval_examples."""
        raise NotImplementedError

    def load_model(self, ctx: RunContext):
        from .kernels import attention_implementation

        return load_causal_lm(
            ctx.location,
            ctx.config.peft.quantization,
            trust_remote_code=ctx.config.model.trust_remote_code,
            attention=attention_implementation(ctx.config.training.kernels),
        )

    def evaluate(self, ctx: RunContext, model, examples: list) -> dict:
        """Metrics of ``model`` on ``examples`` (loss/perplexity, or accuracy for classifiers)."""
        raise NotImplementedError

    def build_trainer(self, ctx: RunContext, model, common_args: dict, callbacks: list):
        """A transformers Trainer (or TRL trainer) built from the shared ``common_args``."""
        raise NotImplementedError

    def modules_to_save(self, ctx: RunContext, model) -> list[str] | None:
        """Modules trained in full and saved with the adapter (e.g. a classification head); None: none."""
        return None

    def finalize(self, ctx: RunContext, metrics: dict, staging: Path) -> list[str]:
        """After the final evaluation, before the reports are written: add to ``metrics``, write extra
        artifacts into ``staging`` (e.g. a plot) and return extra Markdown lines for eval_report.md."""
        return []

    def samples(self, ctx: RunContext, model) -> list[dict]:
        """Side-by-side generations for eval_report.md: [{prompt, reference, base, tuned}]."""
        return []

    def save(self, ctx: RunContext, model, staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        ctx.tokenizer.save_pretrained(str(staging))

    def evaluate_file(self, request: EvaluateRequest) -> dict:
        """``finetune-train evaluate``: the method's metrics of the model (+ adapter) on ``request.data``."""
        raise NotImplementedError

    def merge(self, ctx: RunContext, adapter_dir: Path, target: Path) -> None:
        """Write the base model with the adapter merged in (16/32-bit base, also for qlora)."""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from .models import load_model

        base = load_model(
            AutoModelForCausalLM, ctx.location, None, trust_remote_code=ctx.config.model.trust_remote_code
        )
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(target), safe_serialization=True)
        ctx.tokenizer.save_pretrained(str(target))


METHODS: dict[Method, str] = {
    Method.SFT: "finetune_trainer.sft:SFTMethod",
    Method.CLASSIFICATION: "finetune_trainer.classification:ClassificationMethod",
    Method.DPO: "finetune_trainer.dpo:DPOMethod",
}


def get_method(method: Method) -> TrainingMethod:
    target = METHODS.get(method)
    if target is None:
        raise ConfigError(f'field "method": {method.value!r} is not supported by this trainer')
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f'field "method": {method.value!r} is not available in this trainer image') from None
        raise
    return getattr(module, cls_name)()


# --- finetune-train evaluate ---------------------------------------------------------------------


def evaluate_command(request: EvaluateRequest) -> dict:
    """Evaluate with the method that fits the data (or the adapter): see :func:`evaluation_method`."""
    return get_method(evaluation_method(request)).evaluate_file(request)


def evaluation_method(request: EvaluateRequest) -> Method:
    """The method whose metrics fit: the one of the given format, else the one whose marker file the
    adapter has (a classification adapter's label_map.json), else the one of the detected format."""
    fmt = request.format
    if fmt is DatasetFormat.AUTO and request.adapter:
        for method in METHODS:
            marker = get_method(method).adapter_marker
            if marker and (Path(request.adapter) / marker).is_file():
                return method
    if fmt is DatasetFormat.AUTO:
        fmt = read_records(request.data, DatasetFormat.AUTO)[0]
    return FORMATS[fmt].method


def check_adapter_dir(adapter: str) -> Path:
    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"adapter {adapter}: no adapter_config.json there")
    return path


def open_adapter(model, adapter: str):
    """``model`` with the LoRA adapter in directory ``adapter`` (for evaluation)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(check_adapter_dir(adapter)))


def evaluate_with_adapter(model, request: EvaluateRequest, evaluate: Callable[[Any], dict]) -> dict:
    """``evaluate(model)`` with ``request.adapter`` loaded onto ``model``; with ``compare_base``,
    also ``evaluate`` with the adapter disabled, as ``"base"``."""
    result: dict = {}
    if request.adapter:
        model = open_adapter(model, request.adapter)
        if request.compare_base:
            with model.disable_adapter():
                result["base"] = evaluate(model)
    result.update(evaluate(model))
    return result
