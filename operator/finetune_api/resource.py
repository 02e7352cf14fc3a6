"""The FineTuneJob resource: spec (what the user writes) and status (what the operator reports)."""

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from .affinity import Affinity
from .base import ROLLBACK_SAFE_DEFAULT, ApiModel
from .contract import TRAINER_STATUS_FIELDS, input_sources
from .crossfield import check
from .distributed import DEFAULT_RDZV_TIMEOUT_SECONDS, MAX_NODES
from .methods import Method
from .names import LABEL_VALUE_PATTERN, DnsSubdomain, LabelValue, QualifiedName
from .protocol import MemoryPlan, TrainingProgress
from .quantity import QUANTITY_PATTERN
from .rules import OUTPUT_RULES, RESOURCE_RULES, SOURCE_RULES, SPEC_RULES, TOLERATION_RULES
from .serving import ServingSpec, ServingStatus
from .training import DatasetSpec, EvaluationSpec, ModelSpec, PeftSpec, TrainingSpec

Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)]
MAX_MAP_ENTRIES = 64


class ResourcesSpec(ApiModel):
    """Compute for the trainer pod."""

    gpus: int = Field(default=1, ge=0, le=64)
    """`nvidia.com/gpu` to request per node (requests = limits). 0 runs on CPU (slow; for tests and tiny models)."""
    nodes: int = Field(default=1, ge=1, le=MAX_NODES, json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    (
        "Nodes to train on, one trainer pod each (an Indexed Job with a headless Service; data-parallel over "
        "`nodes x max(gpus, 1)` processes). Above 1 the output claim must be ReadWriteMany."
    )
    rendezvous_timeout_seconds: int | None = Field(default=None, ge=30, le=3600)
    (
        "With `nodes` above 1: how long a pod waits to reach node 0 and for every node to join before the run "
        f"fails (default {DEFAULT_RDZV_TIMEOUT_SECONDS})."
    )
    gpu_product: str | None = Field(default=None, min_length=1, max_length=63, pattern=LABEL_VALUE_PATTERN)
    """Require nodes whose `nvidia.com/gpu.product` label equals this, e.g. `NVIDIA-A10G` or `NVIDIA-A100-SXM4-80GB`."""
    cpu: Quantity = "4"
    """CPU request."""
    memory: Quantity = "16Gi"
    """Memory request and limit (the container is OOM-killed above it)."""
    shm_size: Quantity = "1Gi"
    """Size of the /dev/shm memory volume (dataloader workers need more than the runtime's 64 MB default)."""

    @model_validator(mode="after")
    def _bounded(self) -> "ResourcesSpec":
        check(RESOURCE_RULES, self.to_wire())
        return self


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
        check(TOLERATION_RULES, self.to_wire())
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
    affinity: Affinity | None = None
    """A core/v1 Affinity of the trainer pod (unknown or misspelt keys are refused, not dropped)."""
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

    @model_validator(mode="after")
    def _plain_path(self) -> "OutputTarget":
        check(OUTPUT_RULES, self.to_wire())
        return self


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
    serving: ServingSpec = Field(default_factory=ServingSpec, json_schema_extra=ROLLBACK_SAFE_DEFAULT)
    """Serving manifests written next to the adapter (vLLM, KServe, KAITO) and the paths listed in status.serving."""
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
        wire = self.to_wire()
        check(SPEC_RULES, wire)
        for obj, rules in SOURCE_RULES.items():
            check(rules, wire.get(obj, {}))
        return self

    def input_sources(self) -> dict[str, str]:
        """Every model and data location of the spec, by field path (contract.INPUT_SOURCE_FIELDS)."""
        return input_sources(self.to_wire())


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


class SourceStatus(ApiModel):
    """A downloaded model or dataset: what the run's fetch step found or put in place."""

    field: str
    """The spec field it came from (`model.source`, `dataset.source`, `dataset.validationSource`)."""
    uri: str
    """The source as the spec gives it."""
    revision: str | None = None
    """The Hub revision asked for."""
    commit: str | None = None
    """The Hub commit that revision resolved to."""
    sha256: str | None = None
    """SHA-256 of the data file, or of a model directory's manifest (`sha256sum` lines of its files)."""
    size_bytes: int | None = None
    """Total size of the fetched files."""
    file_count: int | None = None
    """Files in the entry."""
    verified_with: str | None = None
    """What the bytes were checked against (`sha256`, `s3-etag-md5`, `hub-lfs-sha256+git-blob-sha1`...)."""
    cached: bool | None = None
    """True when it was already in the cache (complete and verified): nothing was downloaded."""
    bytes_downloaded: int | None = None
    """Bytes this run's fetch downloaded (0 when cached)."""
    seconds: float | None = None
    """Wall time of the fetch (waiting for a concurrent fetch of the same entry included)."""
    location: str | None = None
    """Where the entry is: `<claim>:<directory>` (the model cache claim or the output claim)."""


class NodePod(ApiModel):
    """One pod of a run over several nodes."""

    index: int = Field(ge=0)
    """Its node rank (the Indexed Job's completion index); node 0 hosts the rendezvous and writes the artifacts."""
    name: str
    """The pod (its latest attempt)."""
    node: str | None = None
    """The Kubernetes node it was bound to."""


class TopologyStatus(ApiModel):
    """How the run is laid out: nodes, processes, the global batch and where each pod runs."""

    nodes: int = Field(ge=1)
    """Nodes (pods) of the run."""
    processes_per_node: int = Field(ge=1)
    """Training processes per pod (one per GPU, one on CPU)."""
    world_size: int = Field(ge=1)
    """All training processes: nodes x processesPerNode."""
    global_batch_size: int | None = Field(default=None, ge=1)
    (
        "Examples per optimizer step over all processes (micro-batch x accumulation x worldSize); absent while "
        "`training.batchSize: auto` is not planned yet."
    )
    pods: list[NodePod] = Field(default_factory=list, max_length=MAX_NODES)
    """Each node's pod and where it runs."""


class FineTuneJobStatus(ApiModel):
    """Observed state, written by the operator (and `progress` by the trainer)."""

    TRAINER_FIELDS: ClassVar[frozenset[str]] = frozenset(TRAINER_STATUS_FIELDS)
    """Fields the run's trainer writes (the chart's status-integrity policy lets it write only these);
    the operator writes every other field and never these."""

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
    plan: MemoryPlan | None = None
    """The trainer's GPU memory plan (predicted peak, whether it fits, the measured peak), reported by the trainer."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Final figures from the trainer's summary (baseline vs tuned)."""
    artifacts: ArtifactsStatus | None = None
    """Where the adapter is."""
    serving: ServingStatus | None = None
    (
        "How to serve the adapter: its URI, base model reference, rank, target modules, task type and the serving "
        "paths whose manifests were written. Written by the trainer once the adapter is published, just before it "
        "exits."
    )
    gpu_seconds: float | None = None
    """GPU time consumed (GPUs per node x nodes x run seconds)."""
    sources: list[SourceStatus] = Field(default_factory=list, max_length=3)
    """The downloaded models and datasets (`s3://`, `https://`, `hf://`): cached or downloaded, bytes, seconds."""
    topology: TopologyStatus | None = None
    """Nodes, processes, the global batch and each pod's node (the NODES column)."""

    @classmethod
    def operator_fields(cls) -> frozenset[str]:
        """The wire names of the fields the operator owns."""
        return frozenset(
            field.alias or name for name, field in cls.model_fields.items() if name not in cls.TRAINER_FIELDS
        )
