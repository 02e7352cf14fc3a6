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

from .base import ROLLBACK_SAFE_DEFAULT, ApiModel
from .crossfield import check
from .methods import DEFAULT_DPO_BETA
from .methods import DatasetFormat as DatasetFormat  # re-exported: the trainer imports them from here
from .methods import Method as Method
from .names import CONFIG_KEY_PATTERN, DnsSubdomain
from .rules import DATASET_RULES, METHOD_RULES, PEFT_RULES, SERVING_RULES, TRAINING_RULES
from .serving import ServingSpec

# A model or dataset location. pvc:// is resolved by the operator to a mounted path before
# the trainer sees it; s3://, https:// and hf://datasets/ data and s3:// and hf:// models are
# downloaded first (`finetune-train fetch`); the trainer accepts absolute paths, hf:// and builtin: names.
PVC_FORM = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?"
HUB_FORM = r"hf://[A-Za-z0-9][\w.-]*(/[\w.-]+)?"
BUILTIN_FORM = r"builtin:[a-z0-9][-a-z0-9.]*"
PATH_FORM = r"/.*"
# S3 bucket names (3-63 of a-z 0-9 . -) and a key; a model source names a directory (a prefix).
S3_FORM = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"
S3_FILE_FORM = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*[^\s/]"
HTTPS_FORM = r"https://[^\s/?#@]+/[^\s#]*[^\s#/]"
# A dataset repo on the Hub and, in it, a file (`.../train.jsonl`, `.../data/train-00000-of-00002.jsonl`)
# or a split (`.../train`: the repo's JSON Lines files of that split, in name order).
HUB_DATASET_FORM = r"hf://datasets/[A-Za-z0-9][\w.-]*/[\w.-]+/[\w.-]+(/[\w.-]+)*"
SOURCE_PATTERN = f"^({PVC_FORM}|{HUB_FORM}|{BUILTIN_FORM}|{PATH_FORM}|{S3_FORM})$"
FILE_PATTERN = f"^({PVC_FORM}|{PATH_FORM})$"
DATA_PATTERN = f"^({PVC_FORM}|{PATH_FORM}|{S3_FILE_FORM}|{HTTPS_FORM}|{HUB_DATASET_FORM})$"
ADAPTER_PATTERN = f"^({PVC_FORM}|{HUB_FORM}|{PATH_FORM})$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

Source = Annotated[str, Field(pattern=SOURCE_PATTERN, min_length=2, max_length=1024)]
FileSource = Annotated[str, Field(pattern=FILE_PATTERN, min_length=2, max_length=1024)]
"""A data file: on a claim (pvc://) or baked into the image (an absolute path); never the Hub or builtin:."""
DataSource = Annotated[str, Field(pattern=DATA_PATTERN, min_length=2, max_length=2048)]
"""A training or validation file: on a claim, in the image, in an object store, at an https:// URL
(with its sha256) or in a Hub dataset repo."""
AdapterSource = Annotated[str, Field(pattern=ADAPTER_PATTERN, min_length=2, max_length=1024)]
"""An adapter directory: on a claim, on the Hub, or in the image (builtin: names are base models)."""
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]

DOWNLOADED_DATA = ("s3://", "https://", "hf://datasets/")
"""Dataset source schemes that are downloaded before training (the rest are mounted or in the image)."""


class PeftType(StrEnum):
    LORA = "lora"
    QLORA = "qlora"


class SecretKeyRef(ApiModel):
    """A key in a Secret in the FineTuneJob's namespace."""

    name: DnsSubdomain
    """Name of the Secret (in the FineTuneJob's namespace; the requester must be allowed to read it)."""
    key: str = Field(default="token", min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key within the Secret."""


class ObjectStoreSecretRef(ApiModel):
    """A Secret in the FineTuneJob's namespace with the credentials and location of an S3-compatible
    object store (AWS S3, GCS in interoperability mode, MinIO, Ceph RGW, SeaweedFS, versitygw...). The
    requester must be allowed to read it. The defaults are the AWS SDK's environment variable names, so a
    Secret made with `kubectl create secret generic s3 --from-literal=AWS_ACCESS_KEY_ID=...
    --from-literal=AWS_SECRET_ACCESS_KEY=... --from-literal=AWS_ENDPOINT_URL=https://...` needs no keys named."""

    name: DnsSubdomain
    """Name of the Secret."""
    access_key_id_key: str = Field(default="AWS_ACCESS_KEY_ID", max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key holding the access key id."""
    secret_access_key_key: str = Field(default="AWS_SECRET_ACCESS_KEY", max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key holding the secret access key."""
    endpoint_key: str = Field(default="AWS_ENDPOINT_URL", max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key holding the endpoint URL (e.g. `https://minio.example:9000`); when the Secret lacks it, AWS S3."""
    region_key: str = Field(default="AWS_REGION", max_length=253, pattern=CONFIG_KEY_PATTERN)
    """Key holding the region; when the Secret lacks it, `us-east-1`."""


class ModelSpec(ApiModel):
    """The base model to adapt."""

    source: Source
    """Where the base model comes from: `pvc://<claim>/<path>` (a directory on a PersistentVolumeClaim,
    mounted read-only), `hf://<org>/<name>` (the Hugging Face Hub; needs network from the cluster),
    `s3://<bucket>/<prefix>/` (a model directory in an S3-compatible object store, see
    `credentialsSecretRef`), `builtin:smollm2-135m-instruct` or `builtin:minilm-l6` (small real models shipped
    in the trainer image), or an absolute path inside the trainer image. Hub and object-store models are
    downloaded once per source and revision into the model cache and mounted read-only."""
    gguf_file: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^/]+\.gguf$")
    """Name of a GGUF file inside the model directory to load (dequantized) instead of safetensors."""
    revision: str | None = Field(default=None, min_length=1, max_length=255)
    """Hub revision (branch, tag or commit) for `hf://` sources."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret holding a Hub access token, exposed to the trainer as `HF_TOKEN`."""
    credentials_secret_ref: ObjectStoreSecretRef | None = None
    """Object-store credentials and endpoint for an `s3://` source."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Leave off unless you trust the source."""
    adapter: AdapterSource | None = None
    """Start from an existing LoRA adapter of this base model instead of a fresh one, e.g. the SFT adapter
    another FineTuneJob wrote: `pvc://<claim>/<path>` (its directory, with adapter_config.json) or an absolute
    path. Its LoRA settings (rank, alpha, target modules) are kept and `peft` r/alpha/targetModules are ignored.
    With `method: dpo` the reference model is this adapter as loaded (a frozen copy), not the bare base model."""


class DatasetSpec(ApiModel):
    """The training data (JSONL, or a JSON array of records)."""

    source: DataSource
    (
        "The training file: `pvc://<claim>/<path/to/train.jsonl>`, an absolute path inside the trainer image, "
        "`s3://<bucket>/<key>` (see `credentialsSecretRef`), `https://...` (with `sha256`), or a Hub dataset: "
        "`hf://datasets/<org>/<name>/<path/to/file.jsonl>` or `hf://datasets/<org>/<name>/<split>` (the repo's "
        "JSON Lines files of that split, e.g. `data/train-00000-of-00002.jsonl`, in name order). Downloaded "
        "sources are fetched and checked line by line before any GPU time."
    )
    sha256: Sha256 | None = None
    """SHA-256 of the `https://` source (required for one); the download is refused when it differs."""
    revision: str | None = Field(default=None, min_length=1, max_length=255)
    """Hub revision (branch, tag or commit) of `hf://datasets/` sources; `main` when unset."""
    credentials_secret_ref: ObjectStoreSecretRef | None = None
    """Object-store credentials and endpoint for `s3://` sources (the training and the validation file)."""
    format: DatasetFormat = DatasetFormat.AUTO
    """Record layout. `auto` detects it from the first record and requires every record to match."""
    validation_source: DataSource | None = None
    """A separate validation file, in any form `source` takes. When set, `validationSplit` is ignored."""
    validation_sha256: Sha256 | None = None
    """SHA-256 of an `https://` validationSource (required for one)."""
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

    @model_validator(mode="after")
    def _https_needs_sha256(self) -> "DatasetSpec":
        check(DATASET_RULES, self.to_wire())
        return self


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
        check(PEFT_RULES, self.to_wire())
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
    (
        "Liger's Triton kernels for RMSNorm, rotary embeddings and SwiGLU (model families Liger supports, e.g. "
        "Llama, Mistral, Qwen, Gemma) on CUDA GPUs, with any attention kernel. Off by default: no measurable gain on "
        "a QLoRA 8B step. The LM head and loss are computed in chunks without the whole logits either way."
    )
    compile: bool = False
    """torch.compile the model. Off by default: no measurable gain on a QLoRA 8B step, 35 s more start-up."""
    offload: Literal["auto", "on", "off"] = Field(default="auto", json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    (
        "Activation offloading: the layer inputs that gradient checkpointing keeps (2 bytes x hidden size x layers "
        "per token, 256 KiB a token on an 8B Llama) go to page-locked host memory during the forward pass and come "
        "back one layer ahead during the backward pass, on a side CUDA stream. Needs host memory for them (the plan "
        "in status says how much; `resources.memory` must allow it). `auto`: on only where the memory plan does not "
        "fit the GPU without it (long sequences); never on a CPU."
    )
    tiled_mlp: Literal["auto", "on", "off"] = Field(default="auto", json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    (
        "Tiled MLP: the feed-forward block runs over `tileTokens` tokens at a time and is recomputed tile by tile in "
        "the backward pass, so its intermediate activations (3.5x the hidden size per token) never exist for the "
        "whole sequence. Costs one more MLP forward pass. `auto`: on for sequences of at least 32768 tokens per "
        "micro-batch (where attention dominates the step) and wherever the memory plan does not fit without it; "
        "never on a CPU."
    )
    tile_tokens: int = Field(default=16384, ge=64, le=1048576, json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    """Tokens per tile of the tiled MLP."""
    chunked_loss: bool = Field(default=True, json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    (
        "Baseline and final evaluation compute the loss through TRL's chunked LM head (4096 tokens x 32768 "
        "vocabulary entries at a time), without the logits of the whole sequence (vocabulary x tokens x 6 bytes: 47 "
        "GiB for 65536 tokens of a 128k vocabulary). Off: the model's own forward with the full logits. Training "
        "always uses TRL's chunked LM head."
    )


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
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 4
    (
        "Examples per GPU (per process) per forward pass, or `auto`: the largest micro-batch whose memory plan fits "
        "the GPU, keeping the batch per optimizer step (4 x gradientAccumulationSteps) by accumulation."
    )
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
    max_seq_length: int = Field(default=1024, ge=16, le=1048576)
    (
        "Longest tokenized example; longer ones are truncated. Whether a length fits the GPU is the memory plan's "
        "call (status.plan; a run that cannot fit ends InsufficientGPUMemory before loading the model)."
    )
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
    dpo_beta: float | None = Field(default=None, gt=0, le=10)
    """DPO only: strength of the KL penalty that keeps the policy near the reference (0.1 when not set)."""
    kernels: KernelsSpec = Field(default_factory=KernelsSpec)
    """Fast paths (attention kernel, Liger kernels, torch.compile, activation offloading, tiled MLP) on CUDA GPUs."""

    @model_validator(mode="after")
    def _one_length(self) -> "TrainingSpec":
        check(TRAINING_RULES, self.to_wire())
        return self

    @property
    def effective_dpo_beta(self) -> float:
        return self.dpo_beta if self.dpo_beta is not None else DEFAULT_DPO_BETA

    @property
    def micro_batch_size(self) -> int:
        """`batchSize` once the trainer has resolved `auto` (``planning.resolve``)."""
        if isinstance(self.batch_size, str):
            raise ValueError("training.batchSize auto is resolved by the trainer's memory plan before training")
        return self.batch_size

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


class OriginSpec(ApiModel):
    """The run's locations as the FineTuneJob names them, set by the operator. The trainer reads the
    mounted paths it is given and records these instead (adapter_config.json, the model card,
    status.serving), so the artifacts name their inputs by references that resolve outside the pod."""

    model: Source
    """`spec.model.source` (pvc://, hf://, s3://, builtin: or an image path)."""
    adapter: AdapterSource | None = None
    """`spec.model.adapter`."""
    dataset: DataSource
    """`spec.dataset.source`."""
    validation_dataset: DataSource | None = None
    """`spec.dataset.validationSource`."""
    general_dataset: FileSource | None = None
    """`spec.evaluation.generalSource`."""
    output: str = Field(pattern=f"^{PVC_FORM}$", max_length=1100)
    """The output directory: `pvc://<claim>/<path>`."""
    name: DnsSubdomain
    """The FineTuneJob's name (names the serving objects)."""
    output_access_modes: list[str] | None = Field(default=None, max_length=4)
    """The output claim's access modes, where the operator read them (serving replicas above 1 need a shared claim)."""


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
    serving: ServingSpec = Field(default_factory=ServingSpec)
    origin: OriginSpec | None = None
    (
        "The FineTuneJob's own locations; None when the trainer runs outside the operator (then the paths it reads "
        "are recorded)."
    )

    @model_validator(mode="after")
    def _method_matches_data(self) -> "TrainerConfig":
        wire = self.to_wire()
        check(METHOD_RULES, wire)
        check(SERVING_RULES, wire)
        return self
