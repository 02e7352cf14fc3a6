"""The contract between the trainer and the operator: exit codes, progress and the final summary.

The trainer prints one `TrainingProgress` JSON line per logging step, patches it into the
FineTuneJob's `status.progress` when it runs in a cluster, and writes a `TrainerSummary`
(at most 4 KiB of JSON) to the container's termination-message path when it exits. The
operator reads the summary from the Pod status.
"""

from enum import IntEnum, StrEnum

from pydantic import Field

from .base import ApiModel

TERMINATION_MESSAGE_LIMIT = 4096


class ExitCode(IntEnum):
    """Trainer exit codes; each maps to a FineTuneJob failure reason."""

    OK = 0
    FAILED = 1  # anything unexpected
    INVALID_CONFIG = 2
    INVALID_DATA = 3
    MODEL_NOT_FOUND = 4
    OUT_OF_MEMORY = 5
    OUTPUT_EXISTS = 6  # the output directory holds another run's result


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


EXIT_CODE_REASONS: dict[int, FailureReason] = {
    ExitCode.FAILED: FailureReason.TRAINER_ERROR,
    ExitCode.INVALID_CONFIG: FailureReason.INVALID_CONFIG,
    ExitCode.INVALID_DATA: FailureReason.INVALID_DATA,
    ExitCode.MODEL_NOT_FOUND: FailureReason.MODEL_NOT_FOUND,
    ExitCode.OUT_OF_MEMORY: FailureReason.OUT_OF_MEMORY,
    ExitCode.OUTPUT_EXISTS: FailureReason.OUTPUT_EXISTS,
}


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


class ArtifactSummary(ApiModel):
    """Where the adapter landed."""

    path: str
    """Directory of the finalized artifacts (inside the trainer container)."""
    size_bytes: int = Field(ge=0)
    """Total size of the artifact files."""
    sha256: str | None = None
    """SHA-256 of `adapter_model.safetensors`."""


class TrainerSummary(ApiModel):
    """Compact final summary, written to the termination-message path (at most 4 KiB)."""

    outcome: str = Field(pattern=r"^(succeeded|failed)$")
    """`succeeded` or `failed`."""
    reason: str | None = None
    """A FailureReason value when failed."""
    message: str | None = Field(default=None, max_length=2048)
    """Human-readable explanation (the error, naming file, line and field where it applies)."""
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
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT + 16
        message = (self.message or "")[: max(0, len(self.message or "") - overflow)] + "..."
        return self.model_copy(update={"message": message}).model_dump_json(by_alias=True, exclude_none=True)
