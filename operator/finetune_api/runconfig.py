"""A FineTuneJob's spec -> the trainer's config (pure). The operator writes it into the run's
ConfigMap; the trainer, in a cluster, derives it again from its own FineTuneJob and refuses to
run a config that differs (a config its FineTuneJob did not ask for).

Downloaded sources (``fetch_plans``): every ``s3://``, ``https://`` and ``hf://`` model or dataset
is fetched by the run's fetch Job (``finetune-train fetch``) before the trainer Job exists, into a
directory both pods mount at the same path; the trainer's config names the fetched entry
``<into>/<fetch_entry_name(source, revision, sha256)>``:

* a model goes into the model cache, the admin's claim mounted at MODEL_CACHE_MOUNT (read-write
  in the fetch pod, read-only in the trainer's), or, when the chart names no cache claim, into
  FETCH_DIR on the run's output claim;
* a dataset goes into FETCH_DIR on the run's output claim (the requester's own claim); the entry
  directory holds the file and its record, and the trainer reads the file the record names.

Whether a cache claim is set is the one chart setting the paths depend on; the trainer learns it
from FINETUNE_MODEL_CACHE (its value pinned by the chart's admission policy).
"""

from __future__ import annotations

import dataclasses
import posixpath

from .protocol import fetch_entry_name
from .resource import FineTuneJobSpec
from .training import (
    DOWNLOADED_DATA,
    DatasetSpec,
    EvaluationSpec,
    ModelSpec,
    OriginSpec,
    OutputSpec,
    ReportingSpec,
    TrainerConfig,
)

PVC_MOUNT_ROOT = "/mnt/pvc"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MODEL_CACHE_MOUNT = "/mnt/finetune-cache"
"""Where the model cache claim is mounted (read-write in fetch pods, read-only in trainer pods)."""
FETCH_DIR = ".finetune-fetch"
"""The directory on the output claim that holds fetched datasets (and models without a cache claim)."""
MODEL_CACHE_ENV = "FINETUNE_MODEL_CACHE"
"""The environment variable naming the model cache claim (unset: no cache claim)."""
DOWNLOADED_MODELS = ("hf://", "s3://")
"""Model source schemes that are fetched before training."""


@dataclasses.dataclass(frozen=True)
class FetchPlan:
    """One source the fetch Job downloads before training, and where it lands."""

    field: str
    """The spec field (``model.source``, ``dataset.source``, ``dataset.validationSource``)."""
    container: str
    """The fetch pod's container for it (``model``, ``dataset``, ``validation``)."""
    source: str
    kind: str
    """``model`` (a directory) or ``dataset`` (one file)."""
    revision: str | None
    sha256: str | None
    into: str
    """The destination directory (the same path in the fetch and the trainer pod)."""
    in_cache: bool
    """True when ``into`` is the model cache claim (else the output claim's FETCH_DIR)."""

    @property
    def entry(self) -> str:
        return fetch_entry_name(self.source, self.revision, self.sha256)

    @property
    def path(self) -> str:
        """The fetched entry directory: what the trainer's config names."""
        return posixpath.join(self.into, self.entry)


def fetch_plans(spec: FineTuneJobSpec, model_cache: bool) -> list[FetchPlan]:
    """The downloads a spec needs, model first (empty when every source is on a claim or in the image)."""
    data_dir = posixpath.join(pvc_mount_path(spec.output.pvc), FETCH_DIR)
    plans: list[FetchPlan] = []
    model = spec.model
    if model.source.startswith(DOWNLOADED_MODELS):
        into = MODEL_CACHE_MOUNT if model_cache else data_dir
        plans.append(FetchPlan("model.source", "model", model.source, "model", model.revision, None, into, model_cache))
    data = spec.dataset
    for field, container, source, sha in (
        ("dataset.source", "dataset", data.source, data.sha256),
        ("dataset.validationSource", "validation", data.validation_source, data.validation_sha256),
    ):
        if source and source.startswith(DOWNLOADED_DATA):
            revision = data.revision if source.startswith("hf://") else None
            plans.append(FetchPlan(field, container, source, "dataset", revision, sha, data_dir, False))
    return plans


def parse_pvc_source(source: str) -> tuple[str, str] | None:
    """``pvc://claim/some/path`` -> ``("claim", "some/path")``; None for other schemes."""
    if not source.startswith("pvc://"):
        return None
    rest = source[len("pvc://") :]
    claim, _, path = rest.partition("/")
    return claim, posixpath.normpath(path).lstrip("/") if path.strip("/") else ""


def pvc_mount_path(claim: str) -> str:
    return f"{PVC_MOUNT_ROOT}/{claim}"


def resolve_source(source: str | None) -> str | None:
    """The path the trainer sees for a source: pvc:// becomes a path under the claim's mount."""
    if source is None:
        return None
    parsed = parse_pvc_source(source)
    if parsed is None:
        return source
    claim, path = parsed
    return posixpath.join(pvc_mount_path(claim), path) if path else pvc_mount_path(claim)


def output_subpath(spec: FineTuneJobSpec, namespace: str, name: str) -> str:
    """Directory inside the output claim: ``output.path`` or ``<namespace>/<name>``."""
    return spec.output.path or f"{namespace}/{name}"


def output_dir(spec: FineTuneJobSpec, namespace: str, name: str) -> str:
    return posixpath.join(pvc_mount_path(spec.output.pvc), output_subpath(spec, namespace, name))


def trainer_config(
    spec: FineTuneJobSpec,
    namespace: str,
    name: str,
    uid: str,
    status_patch_interval_seconds: float = 10.0,
    model_cache: bool = False,
    output_access_modes: list[str] | None = None,
) -> TrainerConfig:
    """The TrainerConfig for a FineTuneJob: the training part of the spec, sources resolved to paths (claims to
    their mounts, downloads to their fetched entries), the run's output directory, the spec's own locations."""
    fetched = {plan.field: plan for plan in fetch_plans(spec, model_cache)}
    model_plan = fetched.get("model.source")
    model = ModelSpec.model_validate(
        {
            **spec.model.model_dump(),
            "source": model_plan.path if model_plan else resolve_source(spec.model.source),
            "revision": None if model_plan else spec.model.revision,  # fetched at that revision
            "credentials_secret_ref": None,  # the fetch step's, never the trainer's
            "adapter": resolve_source(spec.model.adapter),
        }
    )
    data_plan, validation_plan = fetched.get("dataset.source"), fetched.get("dataset.validationSource")
    dataset = DatasetSpec.model_validate(
        {
            **spec.dataset.model_dump(),
            "source": data_plan.path if data_plan else resolve_source(spec.dataset.source),
            "validation_source": validation_plan.path
            if validation_plan
            else resolve_source(spec.dataset.validation_source),
            "credentials_secret_ref": None,
        }
    )
    evaluation = EvaluationSpec.model_validate(
        {
            **spec.evaluation.model_dump(),
            "general_source": resolve_source(spec.evaluation.general_source),
        }
    )
    return TrainerConfig(
        method=spec.method,
        model=model,
        dataset=dataset,
        peft=spec.peft,
        training=spec.training,
        evaluation=evaluation,
        output=OutputSpec(
            dir=output_dir(spec, namespace, name),
            merge=spec.output.merge,
            run_id=uid,
            owner=f"{namespace}/{name}",
            replace=spec.output.replace,
        ),
        reporting=ReportingSpec(
            termination_message_path=TERMINATION_MESSAGE_PATH,
            status_patch_interval_seconds=status_patch_interval_seconds,
        ),
        serving=spec.serving,
        origin=origin(spec, namespace, name, output_access_modes),
    )


def origin(spec: FineTuneJobSpec, namespace: str, name: str, output_access_modes: list[str] | None) -> OriginSpec:
    """The spec's own locations, for the artifacts (the trainer reads mounted or fetched paths);
    ``output_access_modes``: the output claim's, where the operator read them (serving replicas above
    1 need a shared claim)."""
    return OriginSpec(
        model=spec.model.source,
        adapter=spec.model.adapter,
        dataset=spec.dataset.source,
        validation_dataset=spec.dataset.validation_source,
        general_dataset=spec.evaluation.general_source,
        output=f"pvc://{spec.output.pvc}/{output_subpath(spec, namespace, name)}",
        name=name,
        output_access_modes=output_access_modes,
    )
