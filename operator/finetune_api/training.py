"""The training part of a FineTuneJob: what the trainer reads.

Defaults follow the seed chapters (LoRA r=16, alpha=32, dropout 0.1 on the attention
projections; lr 2e-4 with a cosine schedule and 3% warmup; 3 epochs of batch 4 with
gradient accumulation 4; paged 8-bit AdamW; max grad norm 0.3; gradient checkpointing).
The same models are embedded in the FineTuneJob spec (see ``resource.py``) and parsed by
the trainer from its ``config.json`` (``TrainerConfig``).
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import ApiModel
from .names import CONFIG_KEY_PATTERN, DnsSubdomain

# A model or dataset location. pvc:// is resolved by the operator to a mounted path before
# the trainer sees it; the trainer accepts absolute paths, hf:// and builtin: names.
PVC_FORM = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?"
HUB_FORM = r"hf://[A-Za-z0-9][\w.-]*(/[\w.-]+)?"
BUILTIN_FORM = r"builtin:[a-z0-9][-a-z0-9.]*"
PATH_FORM = r"/.*"
SOURCE_PATTERN = f"^({PVC_FORM}|{HUB_FORM}|{BUILTIN_FORM}|{PATH_FORM})$"
FILE_PATTERN = f"^({PVC_FORM}|{PATH_FORM})$"
ADAPTER_PATTERN = f"^({PVC_FORM}|{HUB_FORM}|{PATH_FORM})$"

Source = Annotated[str, Field(pattern=SOURCE_PATTERN, min_length=2, max_length=1024)]
FileSource = Annotated[str, Field(pattern=FILE_PATTERN, min_length=2, max_length=1024)]
"""A data file: on a claim (pvc://) or baked into the image (an absolute path); never the Hub or builtin:."""
AdapterSource = Annotated[str, Field(pattern=ADAPTER_PATTERN, min_length=2, max_length=1024)]
"""An adapter directory: on a claim, on the Hub, or in the image (builtin: names are base models)."""


class Method(StrEnum):
    """What is trained."""

    SFT = "sft"
    CLASSIFICATION = "classification"
    DPO = "dpo"


class DatasetFormat(StrEnum):
    """Record layouts the trainer understands."""

    AUTO = "auto"
    CHAT = "chat"  # {"messages": [{"role": ..., "content": ...}, ...]}
    ALPACA = "alpaca"  # {"instruction", "input"?, "output"}
    PROMPT_COMPLETION = "prompt-completion"  # {"prompt", "completion"}
    TEXT = "text"  # {"text"}
    SHAREGPT = "sharegpt"  # {"conversations": [{"from": ..., "value": ...}, ...]}
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"} (DPO)
    CLASSIFICATION = "classification"  # {"text", "label"}


class PeftType(StrEnum):
    LORA = "lora"
    QLORA = "qlora"


class SecretKeyRef(ApiModel):
    """A key in a Secret in the FineTuneJob's namespace."""

    name: DnsSubdomain
    """Name of the Secret (in the FineTuneJob's namespace; the requester must be allowed to read it)."""
    key: str = Field(default="token", min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key within the Secret."""


class ModelSpec(ApiModel):
    """The base model to adapt."""

    source: Source
    """Where the base model comes from: `pvc://<claim>/<path>` (a directory on a PersistentVolumeClaim,
    mounted read-only), `hf://<org>/<name>` (the Hugging Face Hub; needs network from the cluster),
    `builtin:smollm2-135m-instruct` or `builtin:minilm-l6` (small real models shipped in the trainer
    image), or an absolute path inside the trainer image."""
    gguf_file: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^/]+\.gguf$")
    """Name of a GGUF file inside the model directory to load (dequantized) instead of safetensors."""
    revision: str | None = Field(default=None, min_length=1, max_length=255)
    """Hub revision (branch, tag or commit) for `hf://` sources."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret holding a Hub access token, exposed to the trainer as `HF_TOKEN`."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Leave off unless you trust the source."""
    adapter: AdapterSource | None = None
    """Start from an existing LoRA adapter of this base model instead of a fresh one, e.g. the SFT adapter
    another FineTuneJob wrote: `pvc://<claim>/<path>` (its directory, with adapter_config.json) or an absolute
    path. Its LoRA settings (rank, alpha, target modules) are kept and `peft` r/alpha/targetModules are ignored.
    With `method: dpo` the reference model is this adapter as loaded (a frozen copy), not the bare base model."""


class DatasetSpec(ApiModel):
    """The training data (JSONL, or a JSON array of records)."""

    source: FileSource
    """The training file: `pvc://<claim>/<path/to/train.jsonl>` or an absolute path inside the trainer image."""
    format: DatasetFormat = DatasetFormat.AUTO
    """Record layout. `auto` detects it from the first record and requires every record to match."""
    validation_source: FileSource | None = None
    """A separate validation file. When set, `validationSplit` is ignored."""
    validation_split: float = Field(default=0.1, ge=0.0, lt=0.5)
    """Fraction of the (deduplicated) training records held out for evaluation when no validation file is given."""
    min_records: int = Field(default=10, ge=1)
    """Refuse datasets with fewer usable records than this (10 is the floor OpenAI enforces)."""
    min_chars: int = Field(default=1, ge=0)
    (
        "Drop records whose trained-on text (answer, completion, output or text) has fewer characters than this after "
        "whitespace normalization."
    )
    deduplicate: bool = True
    """Drop exact duplicate records (after whitespace normalization)."""
    labels: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=2, max_length=1000
    )
    """Classification only: the label set, in order. Discovered from the data when omitted."""


class QuantizationSpec(ApiModel):
    """bitsandbytes 4-bit quantization of the frozen base weights (QLoRA)."""

    bits: Literal[4] = 4
    """Bits per base weight. QLoRA uses 4."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type: `nf4` (NormalFloat4, the QLoRA paper's choice) or `fp4`."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves about 0.4 bits per parameter)."""
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Dtype of the matmuls. `auto` picks bfloat16 where the GPU supports it, float16 on older GPUs, float32 on CPU."""


class PeftSpec(ApiModel):
    """Parameter-efficient fine-tuning: the adapter that is trained."""

    type: PeftType = PeftType.LORA
    """`lora` trains low-rank adapters on a 16/32-bit base; `qlora` does the same on a 4-bit quantized base."""
    r: int = Field(default=16, ge=1, le=1024)
    """LoRA rank."""
    alpha: int = Field(default=32, ge=1, le=4096)
    """LoRA scaling numerator: the update is scaled by alpha/r."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1, max_length=64
    )
    (
        'Module names that get adapters, or `["all-linear"]` for every linear layer but the output head.\n'
        'Model families name them differently (BERT: query/key/value/dense); `["auto"]` picks the attention '
        "projections of the loaded architecture."
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases are trained."""
    quantization: QuantizationSpec | None = None
    """4-bit settings, only with `type: qlora`; a qlora spec without them uses these defaults."""

    @model_validator(mode="after")
    def _quantization_matches_type(self) -> "PeftSpec":
        if self.type is PeftType.QLORA and self.quantization is None:
            self.quantization = QuantizationSpec()
        if self.type is PeftType.LORA and self.quantization is not None:
            raise ValueError("peft.quantization is only valid with peft.type: qlora")
        return self


class KernelsSpec(ApiModel):
    """Fast paths of the training step on CUDA GPUs. Each computes the same function as the plain
    path (the loss curve of a seed stays within run-to-run noise); on a CPU they are not used.
    Turn one off to rule it out when something looks wrong. Figures: docs/benchmarks.md."""

    attention: Literal["auto", "varlen", "sdpa", "eager"] = "auto"
    """Attention kernel of causal LMs. `varlen`: flash attention over each packed example on its own
    (variable-length, no work spent on pairs of tokens from different examples); used for the
    padding-free batches of `packing: true`, other batches go to `sdpa`. `sdpa`: PyTorch's
    scaled_dot_product_attention, with a block-diagonal mask over the whole packed batch. `eager`: plain
    matmuls (slow, for debugging). `auto`: `varlen` on a CUDA GPU whose PyTorch has the kernel, else `sdpa`."""
    liger: bool = False
    """Liger's Triton kernels for RMSNorm, rotary embeddings and SwiGLU (model families Liger supports,
    e.g. Llama, Mistral, Qwen, Gemma) on CUDA GPUs. Off by default: no measurable gain on a QLoRA 8B step,
    and with `attention: varlen` the run crashed (so with varlen they are not applied, and the log says so).
    The LM head and loss are computed in chunks without materializing the logits either way (TRL's fused LM head)."""
    compile: bool = False
    """torch.compile the model. Off by default: no measurable gain on a QLoRA 8B step, 35 s more start-up."""


class TrainingSpec(ApiModel):
    """Optimizer and schedule."""

    epochs: float | None = Field(default=None, gt=0, le=1000)
    """Passes over the training data. Set at most one of `epochs` and `maxSteps`; with neither, 3 epochs are run."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""
    learning_rate: float = Field(default=2e-4, gt=0, le=1.0)
    """Peak learning rate. LoRA tolerates higher rates than full fine-tuning."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warmup."""
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    """Fraction of the steps spent warming the learning rate up from 0."""
    batch_size: int = Field(default=4, ge=1, le=4096)
    """Examples per GPU (per process) per forward pass."""
    gradient_accumulation_steps: int = Field(default=4, ge=1, le=4096)
    """Forward passes per optimizer step. The global batch is batchSize x gradientAccumulationSteps x the number
    of GPUs (`resources.gpus`: with more than one, the trainer runs one data-parallel process per GPU); it is
    reported as `globalBatchSize` in status.metrics."""
    optimizer: Literal["paged_adamw_8bit", "adamw_8bit", "adamw_torch", "paged_adamw_32bit", "sgd"] = "paged_adamw_8bit"
    (
        "Optimizer. The 8-bit and paged ones need bitsandbytes on a CUDA GPU; on a CPU the trainer falls back to "
        "`adamw_torch` and says so in its log and metrics."
    )
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(default=0.3, gt=0)
    """Gradient clipping norm."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: less memory, about 20-30% slower."""
    max_seq_length: int = Field(default=1024, ge=16, le=131072)
    """Longest tokenized example; longer ones are truncated."""
    packing: bool = False
    """Pack several short examples into one sequence of `maxSeqLength` tokens."""
    completion_only_loss: bool = True
    """Compute the loss only on assistant/completion tokens (not on the prompt)."""
    seed: int = Field(default=42, ge=0)
    """Random seed for data order, dropout and adapter initialisation."""
    logging_steps: int = Field(default=10, ge=1)
    """Report progress (and training loss) every this many optimizer steps."""
    eval_steps: int | None = Field(default=None, ge=1)
    """Evaluate every this many steps; by default once per epoch."""
    save_steps: int | None = Field(default=None, ge=1)
    """Checkpoint every this many steps (to the output volume, for resuming); by default once per epoch."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop when eval loss has not improved for this many evaluations."""
    dpo_beta: float = Field(default=0.1, gt=0, le=10)
    """DPO only: strength of the KL penalty that keeps the policy near the reference."""
    kernels: KernelsSpec = Field(default_factory=KernelsSpec)
    """Fast paths (attention kernel, Liger kernels, torch.compile) on CUDA GPUs."""

    @model_validator(mode="after")
    def _one_length(self) -> "TrainingSpec":
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("set at most one of training.epochs and training.maxSteps")
        return self

    @property
    def effective_epochs(self) -> float:
        """Epochs to run when `maxSteps` is not set."""
        return self.epochs if self.epochs is not None else 3.0


class EvaluationSpec(ApiModel):
    """Evaluation before and after training."""

    baseline: bool = True
    """Evaluate the untouched base model first, so the tuned figures have something to beat."""
    sample_generations: int = Field(default=3, ge=0, le=50)
    """Held-out prompts generated by the base and the tuned model, side by side in eval_report.md (causal LMs)."""
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    """Length limit of those sample generations."""
    general_source: FileSource | None = None
    """Forgetting check: a general-text JSONL file whose perplexity is measured before and after training."""


class OutputSpec(ApiModel):
    """Where artifacts go, as the trainer sees it."""

    dir: str = Field(pattern=r"^/.*", min_length=2, max_length=4096)
    """Absolute output directory (on the output volume)."""
    merge: bool = False
    """Also write the base model with the adapter merged in (`merged/`). Off by default: artifacts are adapter-only."""
    run_id: str | None = Field(default=None, min_length=1, max_length=128)
    (
        "Identity of the run that owns `dir` (the FineTuneJob's uid), recorded in `dir/_RUN`. A directory owned by "
        "another run is never written to, resumed from or reported as this run's result."
    )
    owner: str | None = Field(default=None, max_length=512)
    """Who the run is, for messages (`<namespace>/<name>`)."""
    replace: bool = False
    """Replace another run's result found in `dir` (only the files that run wrote)."""


class ReportingSpec(ApiModel):
    """How the trainer reports progress while it runs."""

    progress_file: str | None = None
    """A file rewritten with the latest progress line (JSON). Defaults to `<output>/progress.json`."""
    termination_message_path: str = "/dev/termination-log"
    """Where the final summary (at most 4 KiB of JSON) is written for the operator to read from the Pod status."""
    status_patch_interval_seconds: float = Field(default=10.0, ge=1.0)
    """Least time between live progress patches to the FineTuneJob status (when in-cluster reporting is on)."""


class TrainerConfig(ApiModel):
    """Everything the trainer needs: the training part of a FineTuneJob, with sources resolved to paths."""

    method: Method = Method.SFT
    model: ModelSpec
    dataset: DatasetSpec
    peft: PeftSpec = Field(default_factory=PeftSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec
    reporting: ReportingSpec = Field(default_factory=ReportingSpec)

    @model_validator(mode="after")
    def _method_matches_format(self) -> "TrainerConfig":
        check_method_format(self.method, self.dataset.format)
        return self


def check_method_format(method: Method, fmt: DatasetFormat) -> None:
    """Refuse dataset formats that cannot feed the method (the CRD carries the same rule in CEL)."""
    if method is Method.DPO and fmt not in (DatasetFormat.AUTO, DatasetFormat.PREFERENCE):
        raise ValueError(
            f"method dpo needs preference data (prompt/chosen/rejected); dataset.format {fmt.value!r} "
            "has no rejected answers: use method sft for it"
        )
    if method is Method.CLASSIFICATION and fmt not in (DatasetFormat.AUTO, DatasetFormat.CLASSIFICATION):
        raise ValueError(f"method classification needs text/label data; dataset.format {fmt.value!r} does not fit")
    if method is Method.SFT and fmt in (DatasetFormat.PREFERENCE, DatasetFormat.CLASSIFICATION):
        raise ValueError(
            f"method sft cannot train on dataset.format {fmt.value!r}; use method "
            f"{'dpo' if fmt is DatasetFormat.PREFERENCE else 'classification'}"
        )
