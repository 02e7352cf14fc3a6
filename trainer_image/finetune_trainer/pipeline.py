"""The training run, as one straight line of shared steps around a method.

Seam for methods
----------------
A method (``sft`` here; ``classification`` and ``dpo`` plug in the same way) is a module with a
``TrainingMethod`` subclass (see ``methods.py``), registered by dotted path in
``methods.METHODS``. It declares the record formats it takes (``formats``; new layouts are one
``data.register_format`` call) and implements ``prepare`` (tokenize), ``evaluate``,
``build_trainer`` (gets the shared TrainingArguments kwargs and progress callbacks) and,
optionally, ``load_model``/``check_compatible``/``samples``/``save``/``merge``. Everything else is
shared and lives here: config, data read/curate/split (before any model loads), model source
resolution, PEFT wrapping and parameter counts, baseline/final evaluation (+ the optional
general-text forgetting check), checkpoints and resume, progress reporting, atomic artifacts,
the termination summary and exit codes (``cli.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import time
from pathlib import Path

from finetune_api.protocol import ArtifactSummary, TrainerSummary
from finetune_api.training import TrainerConfig

from . import forgetting, report
from .artifacts import COMPLETE_MARKER, OutputDir
from .data import load_dataset_spec
from .errors import ConfigError
from .methods import RunContext, get_method
from .models import load_peft_adapter, parameter_counts, resolve_source, wrap_peft
from .progress import ProgressReporter, StatusPatcher, make_progress_callback

log = logging.getLogger("finetune_trainer")

CUDA_ONLY_OPTIMIZERS = {"paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit"}
RUN_STATE = "run.json"
BASELINE_STATE = "baseline.json"


def make_reporter(config: TrainerConfig) -> ProgressReporter:
    progress_file = config.reporting.progress_file or str(Path(config.output.dir) / "progress.json")
    patcher = StatusPatcher.from_env(config.reporting.status_patch_interval_seconds)
    return ProgressReporter(progress_file, patcher)


def choose_optimizer(requested: str) -> str:
    """The 8-bit and paged optimizers need bitsandbytes on CUDA; elsewhere fall back to adamw_torch."""
    import torch

    if requested in CUDA_ONLY_OPTIMIZERS and not torch.cuda.is_available():
        log.warning("optimizer %s needs a CUDA GPU; no CUDA here, falling back to adamw_torch", requested)
        return "adamw_torch"
    return requested


def training_fingerprint(config: TrainerConfig) -> str:
    """What must match for checkpoints to be resumed (reporting and output settings may differ)."""
    keep = config.to_wire()
    for k in ("reporting", "output", "evaluation"):
        keep.pop(k, None)
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def common_training_args(ctx: RunContext, optimizer: str) -> dict:
    """TrainingArguments kwargs shared by every method."""
    import torch

    c = ctx.config
    t = c.training
    has_eval = ctx.eval_dataset is not None
    eval_strategy = ("steps" if t.eval_steps else "epoch") if has_eval else "no"
    save_strategy = "steps" if t.save_steps else "epoch"
    save_steps = t.save_steps
    kwargs: dict = dict(
        output_dir=str(ctx.out.checkpoints),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        optim=optimizer,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        seed=t.seed,
        data_seed=t.seed,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps if has_eval else None,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=2,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="all",
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    if t.max_steps:
        kwargs["max_steps"] = t.max_steps
    else:
        kwargs["num_train_epochs"] = t.effective_epochs
    # Mixed precision on GPUs only (TRL's configs default bf16=True, which on a CPU without bf16
    # units means slow emulated autocast): bf16 where supported, else fp16; fp32 on CPU.
    cuda = torch.cuda.is_available()
    kwargs["bf16"] = bool(cuda and torch.cuda.is_bf16_supported())
    kwargs["fp16"] = bool(cuda and not kwargs["bf16"])
    if not cuda:
        kwargs["use_cpu"] = True
    if t.early_stopping_patience:
        if not has_eval:
            raise ConfigError('field "training.earlyStoppingPatience": early stopping needs validation data '
                              "(dataset.validationSplit > 0 or dataset.validationSource)")
        if t.eval_steps:
            kwargs["save_strategy"] = "steps"
            kwargs["save_steps"] = t.save_steps or t.eval_steps
            if kwargs["save_steps"] % t.eval_steps:
                raise ConfigError('field "training.saveSteps": with early stopping it must be a multiple of training.evalSteps')
        else:
            kwargs["save_strategy"], kwargs["save_steps"] = "epoch", None
        kwargs.update(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False)
    return kwargs


def peak_memory() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda-max-allocated"

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu-max-rss"


def summary_from_output(root: Path, note: str | None = None) -> TrainerSummary:
    metrics = {}
    try:
        metrics = json.loads((root / "metrics.json").read_text()).get("summary", {})
    except (OSError, ValueError):
        pass
    return TrainerSummary(outcome="succeeded", message=note, metrics=metrics, artifacts=artifact_summary(root))


def artifact_summary(root: Path) -> ArtifactSummary:
    from .artifacts import CHECKSUMS

    size, sha = 0, None
    for line in (root / CHECKSUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        size += (root / name).stat().st_size
        if name == "adapter_model.safetensors":
            sha = digest
    return ArtifactSummary(path=str(root), size_bytes=size, sha256=sha)


def summary_metrics(m: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    pairs = {
        "baselineEvalLoss": ("baseline", "loss"), "evalLoss": ("final", "loss"),
        "baselinePerplexity": ("baseline", "perplexity"), "perplexity": ("final", "perplexity"),
        "baselineAccuracy": ("baseline", "accuracy"), "accuracy": ("final", "accuracy"),
        "baselineMacroF1": ("baseline", "macroF1"), "macroF1": ("final", "macroF1"),  # classification
        "baselineRewardMargin": ("baseline", "rewardMargin"), "rewardMargin": ("final", "rewardMargin"),  # dpo
        "generalBaselinePerplexity": ("generalBaseline", "perplexity"), "generalPerplexity": ("generalFinal", "perplexity"),
    }
    for key, (section, field) in pairs.items():
        v = (m.get(section) or {}).get(field)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = round(float(v), 6)
    for key in ("trainRuntimeSeconds", "tokensPerSecond", "steps", "trainableParameters", "finalTrainLoss", "peakMemoryBytes"):
        v = m.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = round(float(v), 6)
    return out


def train(config: TrainerConfig, reporter: ProgressReporter | None = None) -> TrainerSummary:
    """Run one training job end to end; raises TrainerError subclasses for expected failures.

    On any failure the staging directory is removed; checkpoints stay for the next attempt."""
    out = OutputDir(config.output.dir)
    try:
        return _train(config, out, reporter)
    except BaseException:
        out.abort()
        raise


def _train(config: TrainerConfig, out: OutputDir, reporter: ProgressReporter | None) -> TrainerSummary:
    t0 = time.time()
    if out.is_complete():
        log.warning("%s already holds a completed result (%s); not training again. Use a new output.dir, or delete "
                    "the directory, to train again.", out.root, COMPLETE_MARKER)
        return summary_from_output(out.root, note=f"{out.root} was already complete; nothing was trained")
    method = get_method(config.method)
    reporter = reporter or make_reporter(config)
    ctx = RunContext(config=config, out=out, reporter=reporter)
    reporter.stage("loading")

    # 1. Data, before any model is loaded: bad data fails in seconds.
    ctx.data = load_dataset_spec(config.dataset, config.training.seed, set(method.formats))
    log.info("dataset: %s", ctx.data.report.summary())

    # 2. Tokenizer, compatibility, tokenization.
    ctx.location = resolve_source(config.model)
    ctx.tokenizer = method.load_tokenizer(ctx)
    method.check_compatible(ctx)
    method.prepare(ctx)
    if config.training.early_stopping_patience and ctx.eval_dataset is None:
        raise ConfigError('field "training.earlyStoppingPatience": early stopping needs validation data')

    # 3. Checkpoints from an earlier attempt of this same job?
    out.prepare()
    fingerprint = training_fingerprint(config)
    resume_from = latest_checkpoint(out.checkpoints)
    state_file = out.checkpoints / RUN_STATE
    if resume_from:
        previous = json.loads(state_file.read_text()).get("fingerprint") if state_file.is_file() else None
        if previous and previous != fingerprint:
            raise ConfigError(f"{out.checkpoints} holds checkpoints of a different training config; "
                              "use a new output.dir or delete the checkpoints to start over")
        log.info("resuming from %s", Path(resume_from).name)
    out.checkpoints.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")

    # 4. Model + adapter.
    import torch

    torch.manual_seed(config.training.seed)
    model = method.load_model(ctx)
    if config.model.adapter:  # continue from an existing adapter (e.g. DPO after SFT)
        model, targets = load_peft_adapter(model, config.model.adapter, config.training.gradient_checkpointing)
    else:
        model, targets = wrap_peft(model, config.peft, method.peft_task_type, config.training.gradient_checkpointing,
                                   modules_to_save=method.modules_to_save(ctx, model))
    trainable, total = parameter_counts(model)
    quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
    log.info("trainable parameters: %d of %d (%.3f%%), LoRA on %s", trainable, total, 100 * trainable / max(total, 1), targets)

    # 5. Baseline (the LoRA B matrices start at zero, so the wrapped model is the base model).
    baseline, general_baseline = {}, {}
    baseline_file = out.checkpoints / BASELINE_STATE
    if baseline_file.is_file() and resume_from:
        saved = json.loads(baseline_file.read_text())
        baseline, general_baseline = saved.get("baseline", {}), saved.get("generalBaseline", {})
    elif config.evaluation.baseline and (ctx.eval_examples or ctx.general_examples):
        reporter.stage("baseline-eval")
        baseline = method.evaluate(ctx, model, ctx.eval_examples) if ctx.eval_examples else {}
        general_baseline = method.evaluate(ctx, model, ctx.general_examples) if ctx.general_examples else {}
        baseline_file.write_text(json.dumps({"baseline": baseline, "generalBaseline": general_baseline}) + "\n")
        log.info("baseline eval: %s", baseline)

    # 6. Train (resuming when a checkpoint exists).
    from transformers import EarlyStoppingCallback

    optimizer = choose_optimizer(config.training.optimizer)
    progress_cb = make_progress_callback(reporter)
    callbacks = [progress_cb]
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    trainer = method.build_trainer(ctx, model, common_training_args(ctx, optimizer), callbacks)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # stdout carries only our JSON progress lines
    if not torch.cuda.is_available():
        # TRL keeps QLoRA adapters in bf16; on a CPU (fp32 compute) train them in fp32.
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_runtime = time.time() - train_t0
    model = trainer.model
    state = trainer.state
    tokens_seen = int(state.num_input_tokens_seen or 0)

    # 7. Final evaluation and samples.
    reporter.stage("final-eval")
    final = method.evaluate(ctx, model, ctx.eval_examples) if ctx.eval_examples else {}
    general_final = method.evaluate(ctx, model, ctx.general_examples) if ctx.general_examples else {}
    log.info("final eval: %s", final)
    samples = method.samples(ctx, model)
    peak, peak_kind = peak_memory()

    # 8. Artifacts, staged then published.
    reporter.stage("saving")
    staging = out.staging
    method.save(ctx, model, staging)
    history = [dict(h) for h in state.log_history]
    train_losses = [{"step": h["step"], "loss": h["loss"], "learningRate": h.get("learning_rate"), "epoch": h.get("epoch")}
                    for h in history if "loss" in h]
    eval_losses = [{"step": h["step"], "evalLoss": h["eval_loss"], "epoch": h.get("epoch")} for h in history if "eval_loss" in h]
    resumed_step = int(Path(resume_from).name.split("-")[-1]) if resume_from else 0
    metrics = {
        "method": config.method.value,
        "model": config.model.source,
        "peftType": config.peft.type.value,
        "baseQuantization": config.peft.quantization.quant_type if quantized else None,
        "loraR": config.peft.r,
        "loraAlpha": config.peft.alpha,
        "targetModules": targets if isinstance(targets, str) else list(targets),
        "trainableParameters": int(trainable),
        "totalParameters": int(total),
        "trainablePercent": 100.0 * trainable / max(total, 1),
        "optimizerRequested": config.training.optimizer,
        "optimizerUsed": optimizer,
        "steps": int(state.global_step),
        "totalSteps": int(state.max_steps),
        "epochs": float(state.epoch or 0.0),
        "resumedFromStep": resumed_step,
        "trainRuntimeSeconds": round(train_runtime, 3),
        "totalRuntimeSeconds": None,
        "inputTokensSeen": tokens_seen,
        "tokensPerSecond": round(tokens_seen / train_runtime, 2) if train_runtime > 0 and tokens_seen else None,
        "finalTrainLoss": float(result.training_loss) if result.training_loss is not None else None,
        "peakMemoryBytes": peak,
        "peakMemoryKind": peak_kind,
        "peakMemoryReservedBytes": int(torch.cuda.max_memory_reserved()) if torch.cuda.is_available() else None,
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "baseline": baseline,
        "final": final,
        "generalBaseline": general_baseline,
        "generalFinal": general_final,
        "dataset": ctx.data.report.to_json(),
        "trainLosses": train_losses,
        "evalLosses": eval_losses,
        "samples": samples,
    }
    if config.output.merge:
        reporter.stage("merging")
        method.merge(ctx, staging, staging / "merged")
    report.plot_losses(staging / "loss.png", [{"step": h["step"], **h} for h in history])
    extra_report = method.finalize(ctx, metrics, staging)
    extra_report += forgetting.apply(metrics, Path(config.evaluation.general_source).name if config.evaluation.general_source else None)
    report.write_eval_report(staging / "eval_report.md", metrics, samples, extra_report)
    (staging / "trainer_config.json").write_text(json.dumps(config.to_wire(), indent=2) + "\n")
    metrics["totalRuntimeSeconds"] = round(time.time() - t0, 3)
    metrics["summary"] = summary_metrics(metrics)
    report.write_metrics(staging / "metrics.json", metrics)
    published = publish(out)
    log.info("published %d files (%d bytes) to %s", len(published["files"]), published["size_bytes"], out.root)
    out.remove_checkpoints()
    reporter.update(stage="completed", final=True, step=int(state.global_step), percent=100)
    return TrainerSummary(outcome="succeeded", metrics=metrics["summary"], artifacts=artifact_summary(out.root))


def publish(out: OutputDir) -> dict:
    """Separate function so tests can inject a failure right before publishing."""
    return out.publish()


def latest_checkpoint(path: Path) -> str | None:
    if not path.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(path))


# --- finetune-train evaluate ---------------------------------------------------------------------


def evaluate_command(model_source: str, adapter: str | None, data: str, fmt: str = "auto", max_seq_length: int = 1024,
                     batch_size: int = 4, compare_base: bool = False, quantize: bool = False) -> dict:
    """Loss/perplexity of a base model (plus adapter) on a dataset file, as the trainer computes them.

    Classification adapters (label_map.json) and classification data get accuracy/F1/confusion
    matrix instead; preference data gets the DPO preference metrics."""
    from finetune_api.training import DatasetFormat, ModelSpec, QuantizationSpec

    other = method_evaluation(model_source, adapter, data, fmt, max_seq_length, batch_size, compare_base, quantize)
    if other is not None:
        return other

    from .data import curate, read_records
    from .models import load_causal_lm, load_tokenizer
    from .sft import SFTMethod, tokenize_records

    method = SFTMethod()
    dfmt, records = read_records(data, DatasetFormat(fmt), set(method.formats))
    records, _, _ = curate(records, dfmt, 1, True)
    loc = resolve_source(ModelSpec(source=model_source))
    tokenizer = load_tokenizer(loc)
    if dfmt.value in ("chat", "sharegpt") and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model {model_source} has no chat template, but {Path(data).name} is {dfmt.value} data")
    examples = tokenize_records(tokenizer, dfmt, records, Path(data).name, True, max_seq_length)
    model = load_causal_lm(loc, QuantizationSpec() if quantize else None)
    result: dict = {"model": model_source, "adapter": adapter, "data": data, "format": dfmt.value}
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            from .errors import ModelNotFoundError

            raise ModelNotFoundError(f"adapter {adapter}: no adapter_config.json there")
        if compare_base:
            result["base"] = evaluate_lm_for(model, tokenizer, examples, batch_size)
        model = PeftModel.from_pretrained(model, adapter)
    result.update(evaluate_lm_for(model, tokenizer, examples, batch_size))
    return result


def method_evaluation(model_source: str, adapter: str | None, data: str, fmt: str, max_seq_length: int, batch_size: int,
                      compare_base: bool, quantize: bool) -> dict | None:
    """The classification / preference evaluations, or None for causal-LM loss and perplexity."""
    from finetune_api.training import DatasetFormat

    from . import classification, dpo  # registers their record formats
    from .data import read_records

    if fmt == "auto":
        if adapter and (Path(adapter) / classification.LABEL_MAP_FILE).is_file():
            fmt = DatasetFormat.CLASSIFICATION.value
        else:
            fmt = read_records(data, DatasetFormat.AUTO)[0].value
    if fmt == DatasetFormat.CLASSIFICATION.value:
        return classification.evaluate_command(model_source, adapter, data, min(max_seq_length, 512), max(batch_size, 8),
                                               compare_base, quantize)
    if fmt == DatasetFormat.PREFERENCE.value:
        return dpo.evaluate_command(model_source, adapter, data, max_seq_length, batch_size, quantize)
    return None


def evaluate_lm_for(model, tokenizer, examples, batch_size) -> dict:
    from .evaluation import evaluate_lm

    return evaluate_lm(model, examples, tokenizer.pad_token_id, batch_size)
