"""The contract between the trainer and the operator: exit codes, progress and the final summary.

The trainer prints one `TrainingProgress` JSON line per logging step, patches it into the
FineTuneJob's `status.progress` when it runs in a cluster, and writes a `TrainerSummary`
(at most 4 KiB of JSON) to the container's termination-message path when it exits. The
operator reads the summary from the Pod status.
"""

import hashlib
import re
from enum import IntEnum, StrEnum

from pydantic import ConfigDict, Field

from .base import ApiModel

TERMINATION_MESSAGE_LIMIT = 4096
MAX_WARNINGS = 3
MAX_WARNING_LENGTH = 300


class ExitCode(IntEnum):
    """Trainer exit codes; each maps to a FineTuneJob failure reason."""

    OK = 0
    FAILED = 1  # anything unexpected
    INVALID_CONFIG = 2
    INVALID_DATA = 3
    MODEL_NOT_FOUND = 4
    OUT_OF_MEMORY = 5
    OUTPUT_EXISTS = 6  # the output directory holds another run's result
    # `finetune-train fetch` (downloads of models and data, before any GPU time)
    SOURCE_NOT_FOUND = 7  # 404: no such bucket, object, repo, file in the repo, or URL
    SOURCE_FORBIDDEN = 8  # 401/403: wrong or missing credentials, a gated repo
    REVISION_NOT_FOUND = 9  # the Hub repo has no such branch, tag or commit
    CHECKSUM_MISMATCH = 10  # the downloaded bytes do not match the expected sha256, the Hub's hashes or the ETag
    DOWNLOAD_FAILED = 11  # the connection failed or was cut off, TLS did not verify, a server error
    CACHE_FULL = 12  # the destination volume ran out of space
    # a run over several nodes (finetune_api.distributed)
    PEER_LOST = 13  # several nodes: this pod's processes failed only because another pod's went away or failed
    INSUFFICIENT_GPU_MEMORY = 14  # the memory plan does not fit the GPU (decided before the model loads)


class FailureReason(StrEnum):
    """`status.reason` values of a failed, unschedulable or cancelled FineTuneJob."""

    INVALID_SPEC = "InvalidSpec"
    INVALID_CONFIG = "InvalidConfig"
    INVALID_DATA = "InvalidData"
    MODEL_NOT_FOUND = "ModelNotFound"
    OUT_OF_MEMORY = "OutOfMemory"
    OOM_KILLED = "OOMKilled"
    TRAINER_ERROR = "TrainerError"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    JOB_DELETED = "JobDeleted"
    POD_FAILED = "PodFailed"
    POD_DELETED = "PodDeleted"  # the trainer pod was deleted or evicted before it finished
    POD_REJECTED = "PodRejected"  # admission refused the trainer pod (Pod Security, PriorityClass, LimitRange)
    NAME_CONFLICT = "NameConflict"  # an object the operator would create exists and is not this run's
    OUTPUT_EXISTS = "OutputExists"
    RESULT_MISSING = "ResultMissing"  # the pod exited 0 without the trainer's completion record
    SECRET_NOT_FOUND = "SecretNotFound"  # a Secret (or key) the FineTuneJob references does not exist
    SOURCE_NOT_FOUND = "SourceNotFound"
    SOURCE_FORBIDDEN = "SourceForbidden"
    REVISION_NOT_FOUND = "RevisionNotFound"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    DOWNLOAD_FAILED = "DownloadFailed"
    CACHE_FULL = "CacheFull"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"  # the trainer's memory plan does not fit the GPU it was given
    CLAIM_ACCESS_MODE = "ClaimAccessMode"  # the output claim cannot be shared by the run's nodes or serving replicas


NOT_RETRIED_EXIT_CODES = frozenset(
    {
        ExitCode.INVALID_CONFIG,
        ExitCode.INVALID_DATA,
        ExitCode.MODEL_NOT_FOUND,
        ExitCode.OUT_OF_MEMORY,
        ExitCode.OUTPUT_EXISTS,
        ExitCode.INSUFFICIENT_GPU_MEMORY,
    }
)
"""Failures that a retry of the same spec meets again (the Job's podFailurePolicy fails the Job on
them at once, whatever backoffLimit allows)."""

EXIT_CODE_REASONS: dict[int, FailureReason] = {
    ExitCode.FAILED: FailureReason.TRAINER_ERROR,
    ExitCode.INVALID_CONFIG: FailureReason.INVALID_CONFIG,
    ExitCode.INVALID_DATA: FailureReason.INVALID_DATA,
    ExitCode.MODEL_NOT_FOUND: FailureReason.MODEL_NOT_FOUND,
    ExitCode.OUT_OF_MEMORY: FailureReason.OUT_OF_MEMORY,
    ExitCode.OUTPUT_EXISTS: FailureReason.OUTPUT_EXISTS,
    ExitCode.SOURCE_NOT_FOUND: FailureReason.SOURCE_NOT_FOUND,
    ExitCode.SOURCE_FORBIDDEN: FailureReason.SOURCE_FORBIDDEN,
    ExitCode.REVISION_NOT_FOUND: FailureReason.REVISION_NOT_FOUND,
    ExitCode.CHECKSUM_MISMATCH: FailureReason.CHECKSUM_MISMATCH,
    ExitCode.DOWNLOAD_FAILED: FailureReason.DOWNLOAD_FAILED,
    ExitCode.CACHE_FULL: FailureReason.CACHE_FULL,
    ExitCode.PEER_LOST: FailureReason.TRAINER_ERROR,
    ExitCode.INSUFFICIENT_GPU_MEMORY: FailureReason.INSUFFICIENT_GPU_MEMORY,
}


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "trained and published (or the directory was already complete)",
    ExitCode.FAILED: "anything unexpected (the log has the traceback)",
    ExitCode.INVALID_CONFIG: "unreadable/invalid config, `pvc://` source, unknown target modules, chat data for a "
    "model without a chat template, early stopping without validation data, checkpoints of another config",
    ExitCode.INVALID_DATA: "missing/unparsable file, bad record, mixed formats, too few records",
    ExitCode.MODEL_NOT_FOUND: "model source (or `evaluate --adapter`) not found or not loadable",
    ExitCode.OUT_OF_MEMORY: '`torch.cuda.OutOfMemoryError` or an "out of memory" RuntimeError; the message suggests a '
    "smaller `batchSize` (more `gradientAccumulationSteps`), `gradientCheckpointing: true`, `peft.type: qlora`, a "
    "shorter `maxSeqLength`",
    ExitCode.OUTPUT_EXISTS: "the output directory holds another run's result (another FineTuneJob, or an earlier one "
    "of the same name) and `output.replace` is not set; that result stays untouched",
    ExitCode.SOURCE_NOT_FOUND: "`fetch`: 404, no such bucket, object, repo, file in the repo, split, or URL",
    ExitCode.SOURCE_FORBIDDEN: "`fetch`: 401/403, wrong or missing credentials, a gated repo the token has no "
    "access to",
    ExitCode.REVISION_NOT_FOUND: "`fetch`: the Hub repo has no such branch, tag or commit",
    ExitCode.CHECKSUM_MISMATCH: "`fetch`: the bytes differ from `--sha256`, the Hub's hashes or the object's "
    "checksum/ETag; a cache entry that no longer matches its record",
    ExitCode.DOWNLOAD_FAILED: "`fetch`: cannot connect, TLS does not verify, a server error, a download cut off 5 "
    "times, another fetch of the entry held it past `--lock-timeout`",
    ExitCode.CACHE_FULL: "`fetch`: the destination volume cannot hold the download",
    ExitCode.PEER_LOST: "several nodes: this pod's processes failed only because another pod's went away "
    "(preempted, deleted, killed, or failed without a report), or failed: the message names that pod's cause, and "
    "that pod exits with the cause's own code. The operator's `podFailurePolicy` ignores this code, so that one "
    "failure costs one retry, not one per node",
    ExitCode.INSUFFICIENT_GPU_MEMORY: "the memory plan does not fit the GPU (`FINETUNE_GPU_MEMORY_BYTES` or the CUDA "
    "device), decided before the model loads; the message gives the prediction and what would fit",
}
"""When the trainer exits with each code (docs/trainer.md's table is generated from it: `make docs`)."""


class TrainingProgress(ApiModel):
    """Live progress of a running trainer."""

    step: int = Field(default=0, ge=0)
    """Optimizer steps done."""
    total_steps: int | None = Field(default=None, ge=0)
    """Optimizer steps planned."""
    percent: int | None = Field(default=None, ge=0, le=100)
    """step / totalSteps, in percent."""
    epoch: float | None = Field(default=None, ge=0)
    """Fractional epoch reached."""
    loss: float | None = None
    """Latest training loss."""
    eval_loss: float | None = None
    """Latest evaluation loss, if evaluated yet."""
    learning_rate: float | None = None
    """Current learning rate."""
    tokens_per_second: float | None = None
    """Training throughput over the last logging interval."""
    eta_seconds: float | None = None
    """Estimated seconds until training ends."""
    stage: str | None = Field(default=None, max_length=64)
    """What the trainer is doing: loading, baseline-eval, training, final-eval, saving."""
    updated_at: str | None = None
    """When this was reported (RFC 3339)."""


class MemoryPlan(ApiModel):
    """The trainer's GPU memory plan, written before the model loads (stage `planning`), with the
    measured peak once the first steps ran."""

    predicted_peak_bytes: int = Field(ge=0)
    """Predicted peak of GPU memory PyTorch allocates in training (as `torch.cuda.max_memory_allocated` reports)."""
    predicted_peak_gi_b: float = Field(ge=0)
    """The same in GiB, for `kubectl get`."""
    required_bytes: int = Field(ge=0)
    """What the GPU must hold: the predicted peak plus the CUDA context, allocator slack and paged optimizer state."""
    gpu_memory_bytes: int | None = Field(default=None, ge=0)
    (
        "The GPU's memory the plan was checked against (`FINETUNE_GPU_MEMORY_BYTES`, which the operator sets from the "
        "node's `nvidia.com/gpu.memory` label, else the CUDA device's size); absent on a CPU without that variable."
    )
    fits: bool | None = None
    """Whether `requiredBytes` fits `gpuMemoryBytes`; absent when there is no GPU to check against."""
    host_offload_bytes: int = Field(default=0, ge=0)
    """Page-locked host memory that activation offloading takes (0 when offloading is off)."""
    tokens_per_step: int = Field(ge=0)
    """Tokens per optimizer step per GPU: micro-batch x maxSeqLength x accumulation steps."""
    micro_batch_size: int = Field(ge=1)
    """Examples per forward pass (resolves `training.batchSize: auto`)."""
    gradient_accumulation_steps: int = Field(ge=1)
    """Forward passes per optimizer step (raised to keep the batch when `auto` picks a smaller micro-batch)."""
    offload: bool = False
    """Activation offloading in use (`training.kernels.offload` resolved)."""
    tiled_mlp: bool = False
    """Tiled MLP in use (`training.kernels.tiledMlp` resolved)."""
    terms: dict[str, int] = Field(default_factory=dict)
    """Bytes per term of the predicted peak (weights, adapter, optimizer, activations, logits, workspace)."""
    suggestion: str | None = Field(default=None, max_length=1024)
    """When it does not fit: settings that would."""
    measured_peak_bytes: int | None = Field(default=None, ge=0)
    """Peak allocated once the first steps ran (the same measure as `predictedPeakBytes`)."""
    measured_peak_gi_b: float | None = Field(default=None, ge=0)
    """The same in GiB."""
    eta_seconds: float | None = Field(default=None, ge=0)
    """Estimated seconds of training left, once the first steps ran."""


class ArtifactSummary(ApiModel):
    """Where the adapter landed."""

    path: str
    """Directory of the finalized artifacts (inside the trainer container)."""
    size_bytes: int = Field(ge=0)
    """Total size of the artifact files."""
    sha256: str | None = None
    """SHA-256 of `adapter_model.safetensors`."""


class TrainerSummary(ApiModel):
    """Compact final summary, written to the termination-message path (at most 4 KiB).

    This is the completion record of protocol 1, which every operator since 0.1.0 reads, and 0.1.0
    refuses a record with a field it does not know (its models forbid extra fields). So its fields
    are frozen: a run started by a newer operator must still succeed when a rollback leaves the
    older one to read its result. What later versions report goes through the status subresource
    instead (`status.serving`, written by the trainer, like `status.plan`). Readers ignore fields
    they do not know, so a later protocol may add some once 0.1.0 is out of support.
    """

    model_config = ConfigDict(extra="ignore")

    outcome: str = Field(pattern=r"^(succeeded|failed)$")
    """`succeeded` or `failed`."""
    reason: str | None = None
    """A FailureReason value when failed."""
    message: str | None = Field(default=None, max_length=2048)
    (
        "Human-readable explanation: the error, naming file, line and field where it applies; on success what "
        "the run did that the user may not have meant (`warning: ...`), if anything."
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    (
        "Key figures, e.g. baselineEvalLoss, evalLoss, baselinePerplexity, perplexity, baselineAccuracy, accuracy, "
        "trainRuntimeSeconds."
    )
    artifacts: ArtifactSummary | None = None
    """The finalized artifacts, when succeeded."""

    def to_termination_message(self) -> str:
        """Serialize within the Kubelet's 4 KiB limit, shortening the message first if needed."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
        if overflow <= 0:
            return text
        message = self.message or ""
        shorter = self.model_copy(update={"message": message[: max(0, len(message) - overflow - 16)] + "..."})
        return shorter.model_dump_json(by_alias=True, exclude_none=True)


def success_note(warnings: list[str]) -> str | None:
    """The message of a successful run: its warnings (what a run did that the user may not have meant,
    e.g. a rare label became a class), at most MAX_WARNINGS of MAX_WARNING_LENGTH characters each."""
    said = [f"warning: {w[:MAX_WARNING_LENGTH]}" for w in warnings[:MAX_WARNINGS]]
    return "; ".join(said) or None


FETCH_RECORD_FILE = ".finetune-fetch.json"
"""The record inside every complete entry of a fetch destination (see FetchRecord)."""


def fetch_entry_name(source: str, revision: str | None = None, sha256: str | None = None) -> str:
    """The directory name of a fetched source in its destination: readable, and unique per (source,
    revision, expected sha256) through a hash. The operator mounts `<cache claim>/<this>` read-only."""
    key = "\0".join((source, revision or "", sha256 or ""))
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", source.split("://", 1)[-1]).strip("-.")[-80:].lstrip("-.")
    suffix = f"@{re.sub(r'[^A-Za-z0-9._-]+', '-', revision)[:40]}" if revision else ""
    return f"{readable}{suffix}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class FetchedFile(ApiModel):
    """One file of a fetched entry, as verified."""

    path: str
    """Path inside the entry directory."""
    size_bytes: int = Field(ge=0)
    """Size in bytes."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the file's bytes."""


class FetchRecord(ApiModel):
    """What `finetune-train fetch` put in place: one JSON line on stdout and in the termination message
    (without `files`), and `<entry>/.finetune-fetch.json` (with `files`), written before the entry is
    renamed into place, so an entry directory exists only complete and verified."""

    outcome: str = Field(default="succeeded", pattern=r"^succeeded$")
    """Always `succeeded` (a failed fetch writes a TrainerSummary with `outcome: failed`)."""
    source: str
    """The source as given (`s3://...`, `https://...`, `hf://...`)."""
    revision: str | None = None
    """The Hub revision asked for (branch, tag or commit), for `hf://` sources."""
    commit: str | None = None
    """The Hub commit that revision resolved to when it was downloaded."""
    path: str
    """The entry directory."""
    file: str | None = None
    """For a dataset: the data file inside the entry (the trainer's `dataset.source` is `<path>/<file>`)."""
    file_count: int = Field(ge=0)
    """Files in the entry."""
    size_bytes: int = Field(ge=0)
    """Total size of the entry's files."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the data file (one file), or of the entry's manifest (`sha256sum` lines of its files in
    path order) for a model directory."""
    verified_with: str
    """What the bytes were checked against, e.g. `sha256`, `hub-lfs-sha256+git-blob-sha1`, `s3-etag-md5`,
    `s3-checksum-sha256`."""
    bytes_downloaded: int = Field(ge=0)
    """Bytes downloaded by this fetch (0 when the entry was reused)."""
    seconds: float = Field(ge=0)
    """Wall time of this fetch, waiting for another fetch of the same entry included."""
    cached: bool
    """True when the entry was already there (complete and verified) and nothing was downloaded."""
    files: list[FetchedFile] | None = None
    """Every file with its size and SHA-256 (in the entry's record file only)."""

    def to_termination_message(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, exclude={"files"})
