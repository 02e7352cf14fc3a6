"""The FineTuneJob resource: spec (what the user writes) and status (what the operator reports)."""

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import ApiModel
from .names import LABEL_VALUE_PATTERN, DnsSubdomain, LabelValue, QualifiedName
from .protocol import TrainingProgress
from .training import (
    DatasetSpec,
    EvaluationSpec,
    Method,
    ModelSpec,
    PeftSpec,
    TrainingSpec,
    check_method_format,
)

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)]
# Absolute paths name files baked into a custom trainer image, and only under these directories:
# anything else (/etc, /proc, /var/run/secrets, the pod's own mounts) is not training data.
IMAGE_PATH_PREFIXES = ("/data/", "/models/")
MAX_MAP_ENTRIES = 64


class ResourcesSpec(ApiModel):
    """Compute for the trainer pod."""

    gpus: int = Field(default=1, ge=0, le=64)
    """`nvidia.com/gpu` to request (requests = limits). 0 runs on CPU (slow; for tests and tiny models)."""
    gpu_product: str | None = Field(default=None, min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)
    """Require nodes whose `nvidia.com/gpu.product` label equals this, e.g. `NVIDIA-A10G` or `NVIDIA-A100-SXM4-80GB`."""
    cpu: Quantity = "4"
    """CPU request."""
    memory: Quantity = "16Gi"
    """Memory request and limit (the container is OOM-killed above it)."""
    shm_size: Quantity = "1Gi"
    """Size of the /dev/shm memory volume (dataloader workers need more than the runtime's 64 MB default)."""


class Toleration(ApiModel):
    """A core/v1 Toleration (checked with the Pod API's rules)."""

    key: QualifiedName | None = None
    """Taint key to match; empty with operator Exists matches all taints."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """`Exists` or `Equal`."""
    value: LabelValue | None = None
    """Taint value for `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""

    @model_validator(mode="after")
    def _pod_api_rules(self) -> "Toleration":
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists must not set value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without key must use operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


class SchedulingSpec(ApiModel):
    """Where the trainer pod may run."""

    node_selector: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES)
    """Extra node labels the pod requires (merged with the GPU product selector)."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_MAP_ENTRIES)
    (
        "Extra tolerations, added to the operator's default GPU tolerations. Cluster admins may limit which taint keys "
        "a FineTuneJob may tolerate (the chart's admission policy)."
    )
    affinity: dict[str, Any] | None = None
    (
        "A core/v1 Affinity, passed through unchanged (the API server checks it when the trainer Job is created; a "
        "refusal fails the run as InvalidSpec with the server's message)."
    )
    priority_class_name: DnsSubdomain | None = None
    (
        "PriorityClass of the trainer pod. Cluster admins may limit which ones a FineTuneJob may use (the chart's "
        "admission policy)."
    )
    queue_name: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE_PATTERN)
    """Kueue LocalQueue: sets `kueue.x-k8s.io/queue-name` on the Job, which is created suspended for Kueue to admit."""


class RetentionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class OutputTarget(ApiModel):
    """Where the artifacts are written."""

    pvc: DnsSubdomain
    (
        "PersistentVolumeClaim (in the FineTuneJob's namespace) that receives the artifacts; must allow writes from "
        "the trainer pod."
    )
    path: str | None = Field(default=None, max_length=1024, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    """Directory inside the claim. Defaults to `<namespace>/<name>`."""
    merge: bool = False
    """Also write the merged model (base + adapter) under `merged/`. Artifacts are adapter-only otherwise."""
    retention: RetentionPolicy = RetentionPolicy.RETAIN
    (
        "`Retain` keeps the artifacts when the FineTuneJob is deleted; `Delete` removes the files this run wrote "
        "(never other files in the directory, nor another run's result)."
    )
    replace: bool = False
    (
        "Replace the result of another run (another FineTuneJob, or an earlier one of the same name) found in the "
        "output directory. Without it such a run fails as OutputExists and the other result stays untouched."
    )


class FineTuneJobSpec(ApiModel):
    """Desired state of a FineTuneJob. Immutable once created, except `suspend` and `ttlSecondsAfterFinished`."""

    method: Method = Method.SFT
    (
        "`sft` (supervised fine-tuning of a causal LM), `classification` (sequence classification) or `dpo` "
        "(preference tuning)."
    )
    model: ModelSpec
    """The base model."""
    dataset: DatasetSpec
    """The training data."""
    peft: PeftSpec = Field(default_factory=PeftSpec)
    """The adapter to train."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Optimizer and schedule."""
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    """Evaluation before and after training."""
    output: OutputTarget
    """Where the adapter and reports go."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Compute for the trainer."""
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    """Placement of the trainer pod."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Trainer image; defaults to the one the operator is configured with."""
    pod_annotations: dict[QualifiedName, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=MAX_MAP_ENTRIES
    )
    """Annotations added to the trainer pod."""
    pod_labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES)
    """Labels added to the trainer pod (the operator's own labels win on conflicts)."""
    suspend: bool = False
    (
        "Suspend the run: the Job is suspended (its pod deleted) until this is set back to false. Checkpoints on the "
        "output volume let it resume."
    )
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Fail the run after this many seconds of running (Job `activeDeadlineSeconds`)."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the finished Job and its pod after this many seconds (the FineTuneJob and its status stay)."""
    backoff_limit: int = Field(default=0, ge=0, le=10)
    """Pod retries before the Job fails. 0: a failed GPU run is looked at, not blindly repeated."""

    @model_validator(mode="after")
    def _cross_field(self) -> "FineTuneJobSpec":
        check_method_format(self.method, self.dataset.format)
        if self.resources.gpu_product and self.resources.gpus == 0:
            raise ValueError("resources.gpuProduct needs resources.gpus >= 1")
        if self.dataset.labels is not None and self.method is not Method.CLASSIFICATION:
            raise ValueError("dataset.labels is only used by method classification")
        for field, source in self.input_sources().items():
            check_source_form(field, source)
        return self

    def input_sources(self) -> dict[str, str]:
        """Every model and data location of the spec, by field path."""
        candidates = {
            "model.source": self.model.source,
            "model.adapter": self.model.adapter,
            "dataset.source": self.dataset.source,
            "dataset.validationSource": self.dataset.validation_source,
            "evaluation.generalSource": self.evaluation.general_source,
        }
        return {k: v for k, v in candidates.items() if v}


def check_source_form(field: str, source: str) -> None:
    """The documented forms beyond the pattern: no `.`/`..` path segments, and absolute paths only
    under IMAGE_PATH_PREFIXES (the CRD carries the same rule in CEL)."""
    path = source.split("://", 1)[1] if "://" in source else source
    if source.startswith(("pvc://", "hf://", "/")) and any(seg in (".", "..") for seg in path.split("/")):
        raise ValueError(f"{field} {source!r} must not contain '.' or '..' path segments")
    if source.startswith("/") and not source.startswith(IMAGE_PATH_PREFIXES):
        raise ValueError(
            f"{field} {source!r}: an absolute path must name a file baked into the trainer image "
            f"under {' or '.join(IMAGE_PATH_PREFIXES)}; use pvc://<claim>/<path> for data on a volume"
        )


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class ConditionType(StrEnum):
    """Condition types (kstatus-compatible: Ready, Reconciling, Stalled, plus our own)."""

    READY = "Ready"  # True once the adapter is finalized
    RECONCILING = "Reconciling"  # True while work is in progress
    STALLED = "Stalled"  # True when it cannot progress (failed, unschedulable)
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    SCHEDULED = "Scheduled"


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", max_length=32768)
    last_transition_time: str
    observed_generation: int | None = Field(default=None, ge=0)


class ArtifactsStatus(ApiModel):
    """The finalized adapter."""

    pvc: str
    """Claim holding the artifacts."""
    path: str
    """Directory inside the claim."""
    size_bytes: int | None = None
    """Total size of the artifact files."""
    sha256: str | None = None
    """SHA-256 of adapter_model.safetensors."""


class FineTuneJobStatus(ApiModel):
    """Observed state, written by the operator (and `progress` by the trainer)."""

    phase: Phase | None = None
    """Pending, Running, Suspended, Succeeded or Failed."""
    reason: str | None = None
    """Machine-readable cause of the current phase (a FailureReason when failed)."""
    message: str | None = None
    """Human-readable detail."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: list[Condition] = Field(default_factory=list)
    """Kubernetes-style conditions."""
    job_name: str | None = None
    """The batch/v1 Job running the trainer."""
    pod_name: str | None = None
    """The trainer pod."""
    start_time: str | None = None
    """When the trainer started running."""
    completion_time: str | None = None
    """When the run ended."""
    duration_seconds: float | None = None
    """Wall time of the run."""
    progress: TrainingProgress | None = None
    """Live progress, reported by the trainer."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Final figures from the trainer's summary (baseline vs tuned)."""
    artifacts: ArtifactsStatus | None = None
    """Where the adapter is."""
    gpu_seconds: float | None = None
    """GPU time consumed (GPUs x run seconds)."""
