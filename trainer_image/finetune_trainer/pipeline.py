"""The training run: shared steps around a method.

    read data -> plan_memory -> prepare_inputs -> resume_point -> load_trainable_model -> baseline_evaluation -> fit
    -> evaluate_sets (final) -> run_metrics -> write_artifacts -> publish

Seam for methods
----------------
A method (``sft``, ``classification``, ``dpo``) is a module with a ``TrainingMethod`` subclass
(see ``methods.py``), registered by dotted path in ``methods.METHODS``. Its record formats are
the entries of ``formats.FORMATS`` that name it; it implements ``prepare`` (tokenize),
``evaluate``, ``evaluate_file`` (``finetune-train evaluate``), ``build_trainer`` (gets the shared
TrainingArguments kwargs and progress callbacks) and, optionally,
``load_model``/``check_compatible``/``samples``/``save``/``merge``. Everything else is shared and
lives here: config, data read/curate/split (before any model loads), model source resolution,
PEFT wrapping and parameter counts, baseline/final evaluation (+ the optional general-text
forgetting check), checkpoints and resume, progress reporting, atomic artifacts, the
termination summary and exit codes (``cli.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_api.protocol import ArtifactSummary, TrainerSummary, success_note
from finetune_api.serving import ServingStatus
from finetune_api.training import TrainerConfig, TrainingSpec

from . import distributed, fetched, forgetting, planning, report, runrecord
from .artifacts import COMPLETE_MARKER, OutputDir
from .data import PreparedData, load_dataset_spec
from .errors import ConfigError
from .handoff import write_handoff
from .kernels import apply_liger
from .methods import RunContext, TrainingMethod, get_method
from .models import load_peft_adapter, model_config, parameter_counts, resolve_source, wrap_peft
from .progress import ProgressReporter, StatusPatcher, make_progress_callback, write_atomic

log = logging.getLogger("finetune_trainer")

CUDA_ONLY_OPTIMIZERS = {"paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit"}
RUN_STATE = "run.json"
BASELINE_STATE = "baseline.json"


def make_reporter(config: TrainerConfig) -> ProgressReporter:
    """stdout, the progress file and the status patch; silent in the workers other than rank 0."""
    if not distributed.is_main():
        return ProgressReporter(None, None, stream=open(os.devnull, "w"))
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
    """What must match for checkpoints to be resumed (reporting, output and kernel settings may differ)."""
    keep = config.to_wire()
    for k in ("reporting", "output", "evaluation", "serving", "origin"):
        keep.pop(k, None)
    keep["training"].pop("kernels", None)
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def common_training_args(ctx: RunContext, optimizer: str) -> dict:
    """TrainingArguments kwargs shared by every method."""
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
        warmup_steps=t.warmup_ratio,  # below 1: a ratio of the total steps (transformers >= 5.0, hence the floor)
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
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
    kwargs.update(device_args(t))
    if t.early_stopping_patience:
        kwargs.update(early_stopping_args(t, has_eval))
    return kwargs


def device_args(t: TrainingSpec) -> dict:
    """Precision, compilation and data parallelism for the device the run has."""
    import torch

    # Mixed precision on GPUs only (TRL's configs default bf16=True, which on a CPU without bf16
    # units means slow emulated autocast): bf16 where supported, else fp16; fp32 on CPU.
    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    kwargs: dict = {"bf16": bf16, "fp16": bool(cuda and not bf16), "torch_compile": bool(cuda and t.kernels.compile)}
    if not cuda:
        kwargs["use_cpu"] = True
    if distributed.world_size() > 1:
        # Gradient checkpointing re-runs every layer's forward: no parameter goes unused.
        kwargs["ddp_find_unused_parameters"] = False
    return kwargs


def early_stopping_args(t: TrainingSpec, has_eval: bool) -> dict:
    """Evaluate and checkpoint in step, and keep the best checkpoint (``earlyStoppingPatience``)."""
    if not has_eval:
        raise ConfigError(
            'field "training.earlyStoppingPatience": early stopping needs validation data '
            "(dataset.validationSplit > 0 or dataset.validationSource)"
        )
    kwargs: dict = {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}
    if not t.eval_steps:
        return {**kwargs, "save_strategy": "epoch", "save_steps": None}
    save_steps = t.save_steps or t.eval_steps
    if save_steps % t.eval_steps:
        raise ConfigError('field "training.saveSteps": with early stopping it must be a multiple of training.evalSteps')
    return {**kwargs, "save_strategy": "steps", "save_steps": save_steps}


def peak_memory() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda-max-allocated"

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu-max-rss"


def summary_from_output(root: Path, reporter: ProgressReporter, note: str | None = None) -> TrainerSummary:
    """The summary of a result published before (a retried pod after the publish); its serving facts
    are reported again."""
    recorded: dict = {}
    try:
        recorded = json.loads((root / "metrics.json").read_text())
    except (OSError, ValueError):
        pass
    if recorded.get("serving"):
        reporter.report_serving(ServingStatus.model_validate(recorded["serving"]))
    return TrainerSummary(
        outcome="succeeded", message=note, metrics=recorded.get("summary", {}), artifacts=artifact_summary(root)
    )


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
        "baselineEvalLoss": ("baseline", "loss"),
        "evalLoss": ("final", "loss"),
        "baselinePerplexity": ("baseline", "perplexity"),
        "perplexity": ("final", "perplexity"),
        "baselineAccuracy": ("baseline", "accuracy"),
        "accuracy": ("final", "accuracy"),
        "baselineMacroF1": ("baseline", "macroF1"),
        "macroF1": ("final", "macroF1"),  # classification
        "baselineRewardMargin": ("baseline", "rewardMargin"),
        "rewardMargin": ("final", "rewardMargin"),  # dpo
        "generalBaselinePerplexity": ("generalBaseline", "perplexity"),
        "generalPerplexity": ("generalFinal", "perplexity"),
    }
    for key, (section, name) in pairs.items():
        v = (m.get(section) or {}).get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = round(float(v), 6)
    for key in (
        "trainRuntimeSeconds",
        "tokensPerSecond",
        "steps",
        "trainableParameters",
        "finalTrainLoss",
        "peakMemoryBytes",
        "nodes",
        "processes",
        "globalBatchSize",
        "predictedPeakMemoryBytes",
    ):
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
    started = time.time()
    # Before anything is written: the directory must be this run's (or free); another run's
    # result is never overwritten, resumed from or reported as ours. One process claims (and, with
    # replace, clears); with several GPUs the others wait for the claim before reading checkpoints.
    if distributed.is_main():
        runrecord.claim(out.root, config.output.run_id, config.output.owner, config.output.replace)
    else:
        runrecord.wait_for_claim(out.root, config.output.run_id)
    if out.is_complete():
        log.warning(
            "%s already holds a completed result (%s); not training again. Use a new output.dir, or delete "
            "the directory, to train again.",
            out.root,
            COMPLETE_MARKER,
        )
        note = f"{out.root} was already complete; nothing was trained"
        return summary_from_output(out.root, reporter or make_reporter(config), note)
    method = get_method(config.method)
    reporter = reporter or make_reporter(config)
    reporter.stage("planning")
    data = load_dataset_spec(config.dataset, config.training.seed, set(method.formats))  # bad data fails first
    log.info("dataset: %s", data.report.summary())
    plan = plan_memory(config, reporter)
    config = plan.config if plan is not None else planning.unplanned(config)
    reporter.stage("loading")
    ctx = prepare_inputs(config, out, reporter, method, data)
    ctx.plan = plan
    resume_from = resume_point(ctx)
    model, adapter = load_trainable_model(ctx, method)
    baseline = baseline_evaluation(ctx, method, model, resume_from)
    fitted = fit(ctx, method, model, resume_from)
    if not distributed.is_main():  # rank 0 evaluates and publishes
        return TrainerSummary(outcome="succeeded", message=f"rank {distributed.rank()} done")
    ctx.reporter.stage("final-eval")
    final = evaluate_sets(ctx, method, fitted.model)
    log.info("final eval: %s", final.domain)
    samples = method.samples(ctx, fitted.model)
    metrics = run_metrics(ctx, adapter, fitted, baseline, final, samples, resume_from)
    serving = write_artifacts(ctx, method, fitted, metrics, started)
    published = publish(out)
    log.info("published %d files (%d bytes) to %s", len(published["files"]), published["size_bytes"], out.root)
    out.remove_checkpoints()
    if serving is not None:
        ctx.reporter.report_serving(serving)
    ctx.reporter.update(stage="completed", final=True, step=fitted.steps, percent=100)
    return TrainerSummary(
        outcome="succeeded",
        message=success_note(ctx.data.warnings),
        metrics=metrics["summary"],
        artifacts=artifact_summary(out.root),
    )


def plan_memory(config: TrainerConfig, reporter: ProgressReporter) -> planning.Plan | None:
    """The memory plan from the model's config alone; a run that cannot fit the GPU ends here
    (InsufficientGPUMemory), before any weight loads. None for a model whose shape the memory
    model cannot read (``batchSize: auto`` is then 4)."""
    cfg = model_config(config.model)
    try:
        plan = planning.plan_run(config, cfg, planning.Target.detect())
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("no memory plan for this model (its config lacks %s); training without one", exc)
        return None
    log.info("%s", planning.one_line(plan))
    if distributed.is_main():
        reporter.report_plan(plan.status)
    planning.check(plan)
    return plan


def prepare_inputs(
    config: TrainerConfig, out: OutputDir, reporter: ProgressReporter, method: TrainingMethod, data: PreparedData
) -> RunContext:
    """The run's context: the data read (before any model loads), the tokenizer, the method's
    compatibility checks and tokenization."""
    ctx = RunContext(config=config, out=out, reporter=reporter, data=data, location=resolve_source(config.model))
    ctx.tokenizer = method.load_tokenizer(ctx)
    method.check_compatible(ctx)
    method.prepare(ctx)
    if config.training.early_stopping_patience and ctx.eval_dataset is None:
        raise ConfigError('field "training.earlyStoppingPatience": early stopping needs validation data')
    return ctx


def resume_point(ctx: RunContext) -> str | None:
    """The latest checkpoint of an earlier attempt of this same job (None: start fresh). Checkpoints
    of a different training config are refused; the config's fingerprint is recorded for the next attempt."""
    out = ctx.out
    resume_from = latest_checkpoint(out.checkpoints)
    if not distributed.is_main():  # rank 0 checks and records, the others follow it
        return resume_from
    out.prepare()
    fingerprint = training_fingerprint(ctx.config)
    state_file = out.checkpoints / RUN_STATE
    if resume_from:
        previous = json.loads(state_file.read_text()).get("fingerprint") if state_file.is_file() else None
        if previous and previous != fingerprint:
            raise ConfigError(
                f"{out.checkpoints} holds checkpoints of a different training config; "
                "use a new output.dir or delete the checkpoints to start over"
            )
        log.info("resuming from %s", Path(resume_from).name)
    write_atomic(state_file, json.dumps({"fingerprint": fingerprint}) + "\n")
    return resume_from


@dataclass
class ModelInfo:
    targets: str | list[str]
    trainable: int
    total: int
    quantized: bool
    kernels: dict
    """The fast paths in use (``training.kernels`` as resolved on this machine)."""


def load_trainable_model(ctx: RunContext, method: TrainingMethod):
    """The method's model (with the fast paths that apply) and a fresh LoRA adapter, or the
    configured one to continue from."""
    import torch

    config = ctx.config
    kernels = config.training.kernels
    torch.manual_seed(config.training.seed)
    model = method.load_model(ctx)
    cuda = torch.cuda.is_available()
    attention = getattr(model.config, "_attn_implementation", None)
    used = {
        "attention": attention,
        "liger": bool(kernels.liger and cuda and apply_liger(model)),
        "compile": bool(kernels.compile and cuda),
    }
    if config.model.adapter:  # continue from an existing adapter (e.g. DPO after SFT)
        model, targets = load_peft_adapter(model, config.model.adapter)
    else:
        model, targets = wrap_peft(
            model, config.peft, method.peft_task_type, modules_to_save=method.modules_to_save(ctx, model)
        )
    if kernels.tiled_mlp == "on":
        from .tiling import tile_mlps

        used["tiledMlp"] = tile_mlps(model, kernels.tile_tokens) > 0
    else:
        used["tiledMlp"] = False
    used["offload"] = kernels.offload == "on" and cuda
    trainable, total = parameter_counts(model)
    quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
    log.info(
        "trainable parameters: %d of %d (%.3f%%), LoRA on %s; kernels %s",
        trainable,
        total,
        100 * trainable / max(total, 1),
        targets,
        used,
    )
    return model, ModelInfo(targets, int(trainable), int(total), quantized, used)


@dataclass
class Evaluation:
    domain: dict = field(default_factory=dict)
    """On the validation set."""
    general: dict = field(default_factory=dict)
    """On evaluation.generalSource (the forgetting check)."""


def evaluate_sets(ctx: RunContext, method: TrainingMethod, model) -> Evaluation:
    return Evaluation(
        method.evaluate(ctx, model, ctx.eval_examples) if ctx.eval_examples else {},
        method.evaluate(ctx, model, ctx.general_examples) if ctx.general_examples else {},
    )


def baseline_evaluation(ctx: RunContext, method: TrainingMethod, model, resume_from: str | None) -> Evaluation:
    """The model before training (the LoRA B matrices start at zero, so the wrapped model is the base
    model); a resumed run reuses the first attempt's figures."""
    if not distributed.is_main():
        return Evaluation()
    baseline_file = ctx.out.checkpoints / BASELINE_STATE
    if baseline_file.is_file() and resume_from:
        saved = json.loads(baseline_file.read_text())
        return Evaluation(saved.get("baseline", {}), saved.get("generalBaseline", {}))
    if not (ctx.config.evaluation.baseline and (ctx.eval_examples or ctx.general_examples)):
        return Evaluation()
    ctx.reporter.stage("baseline-eval")
    baseline = evaluate_sets(ctx, method, model)
    baseline_file.write_text(json.dumps({"baseline": baseline.domain, "generalBaseline": baseline.general}) + "\n")
    log.info("baseline eval: %s", baseline.domain)
    return baseline


@dataclass
class Fitted:
    """What ``trainer.train()`` left: the trained model, its state and the run's figures."""

    model: Any
    state: Any
    training_loss: float | None
    runtime: float
    optimizer: str

    @property
    def steps(self) -> int:
        return int(self.state.global_step)


def fit(ctx: RunContext, method: TrainingMethod, model, resume_from: str | None) -> Fitted:
    """Train (resuming from ``resume_from`` when set), with progress reporting and early stopping."""
    import torch
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    t = ctx.config.training
    optimizer = choose_optimizer(t.optimizer)
    callbacks = [make_progress_callback(ctx.reporter)]
    if ctx.plan is not None and distributed.is_main():
        callbacks.append(planning.make_plan_callback(ctx.reporter, ctx.plan))
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    trainer = method.build_trainer(ctx, model, common_training_args(ctx, optimizer), callbacks)
    trainer.remove_callback(PrinterCallback)  # stdout carries only our JSON progress lines
    if not torch.cuda.is_available():
        # TRL keeps QLoRA adapters in bf16; on a CPU (fp32 compute) train them in fp32.
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    if t.kernels.offload == "on" and torch.cuda.is_available():
        from .offload import install

        install(trainer, trainer.model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    return Fitted(trainer.model, trainer.state, result.training_loss, time.time() - started, optimizer)


def run_metrics(
    ctx: RunContext,
    adapter: ModelInfo,
    fitted: Fitted,
    baseline: Evaluation,
    final: Evaluation,
    samples: list[dict],
    resume_from: str | None,
) -> dict:
    """metrics.json: settings, sizes, speed, memory, the evaluations and the loss history."""
    import torch

    config, state = ctx.config, fitted.state
    quantization = config.peft.quantization
    tokens_seen = int(state.num_input_tokens_seen or 0)
    peak, peak_kind = peak_memory()
    cuda = torch.cuda.is_available()
    return {
        "method": config.method.value,
        "model": config.model.source,
        "peftType": config.peft.type.value,
        "baseQuantization": quantization.quant_type if adapter.quantized and quantization is not None else None,
        "loraR": config.peft.r,
        "loraAlpha": config.peft.alpha,
        "targetModules": adapter.targets if isinstance(adapter.targets, str) else list(adapter.targets),
        "trainableParameters": adapter.trainable,
        "totalParameters": adapter.total,
        "trainablePercent": 100.0 * adapter.trainable / max(adapter.total, 1),
        "optimizerRequested": config.training.optimizer,
        "optimizerUsed": fitted.optimizer,
        "kernels": adapter.kernels,
        "nodes": distributed.nodes(),
        "processes": distributed.world_size(),
        "globalBatchSize": config.training.micro_batch_size
        * config.training.gradient_accumulation_steps
        * distributed.world_size(),
        "steps": fitted.steps,
        "totalSteps": int(state.max_steps),
        "epochs": float(state.epoch or 0.0),
        "resumedFromStep": int(Path(resume_from).name.split("-")[-1]) if resume_from else 0,
        "trainRuntimeSeconds": round(fitted.runtime, 3),
        "totalRuntimeSeconds": None,
        "inputTokensSeen": tokens_seen,
        "tokensPerSecond": round(tokens_seen / fitted.runtime, 2) if fitted.runtime > 0 and tokens_seen else None,
        "finalTrainLoss": float(fitted.training_loss) if fitted.training_loss is not None else None,
        "peakMemoryBytes": peak,
        "peakMemoryKind": peak_kind,
        "peakMemoryReservedBytes": int(torch.cuda.max_memory_reserved()) if cuda else None,
        "predictedPeakMemoryBytes": ctx.plan.status.predicted_peak_bytes if ctx.plan is not None else None,
        "memoryPlan": ctx.plan.status.to_wire() if ctx.plan is not None else None,
        "device": "cuda:" + torch.cuda.get_device_name(0) if cuda else "cpu",
        "baseline": baseline.domain,
        "final": final.domain,
        "generalBaseline": baseline.general,
        "generalFinal": final.general,
        "dataset": ctx.data.report.to_json(),
        "sources": fetched.sources(config),
        **loss_history(state.log_history),
        "samples": samples,
    }


def loss_history(log_history: list[dict]) -> dict[str, list[dict]]:
    """The training and evaluation losses of the trainer's log, step by step."""
    return {
        "trainLosses": [
            {"step": h["step"], "loss": h["loss"], "learningRate": h.get("learning_rate"), "epoch": h.get("epoch")}
            for h in log_history
            if "loss" in h
        ],
        "evalLosses": [
            {"step": h["step"], "evalLoss": h["eval_loss"], "epoch": h.get("epoch")}
            for h in log_history
            if "eval_loss" in h
        ],
    }


def write_artifacts(
    ctx: RunContext, method: TrainingMethod, fitted: Fitted, metrics: dict, started: float
) -> ServingStatus | None:
    """Adapter (+ merged model), loss plot, eval report, config, model card, serving manifests and metrics,
    into the staging directory; returns the serving facts for the summary."""
    config, staging = ctx.config, ctx.out.staging
    ctx.reporter.stage("saving")
    method.save(ctx, fitted.model, staging)
    if config.output.merge:
        ctx.reporter.stage("merging")
        method.merge(ctx, staging, staging / "merged")
    report.plot_losses(staging / "loss.png", [{"step": h["step"], **h} for h in fitted.state.log_history])
    extra_report = method.finalize(ctx, metrics, staging)
    general_name = Path(config.evaluation.general_source).name if config.evaluation.general_source else None
    extra_report += forgetting.apply(metrics, general_name)
    report.write_eval_report(staging / "eval_report.md", metrics, metrics["samples"], extra_report)
    (staging / "trainer_config.json").write_text(json.dumps(config.to_wire(), indent=2) + "\n")
    serving = write_handoff(ctx, fitted.model, metrics)
    metrics["totalRuntimeSeconds"] = round(time.time() - started, 3)
    metrics["summary"] = summary_metrics(metrics)
    report.write_metrics(staging / "metrics.json", metrics)
    return serving


def publish(out: OutputDir) -> dict:
    """Separate function so tests can inject a failure right before publishing."""
    return out.publish()


def latest_checkpoint(path: Path) -> str | None:
    if not path.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(path))
