"""The FineTuneJob's cross-field rules, each written once as a ``crossfield.Rule``: the CRD's CEL
rules (crd.py) and the pydantic validators (resource.py, training.py) are both generated from these
tables, with the same message, so the API server and the operator's models refuse the same
manifests the same way (tests/unit/api/test_cel_parity.py evaluates the generated CEL on the
refused-manifest corpus and compares it with the models' verdict)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from .contract import INPUT_SOURCE_FIELDS
from .crossfield import (
    AtLeast,
    Cond,
    Contains,
    Distinct,
    Empty,
    Eq,
    In,
    IsQuantity,
    Matches,
    NonEmpty,
    Not,
    NotBelowField,
    OnlyValues,
    QuantityBetween,
    QuantityNotAbove,
    Rule,
    Set,
    StartsWith,
    both,
)
from .methods import DEFAULT_DPO_BETA, DatasetFormat, Method
from .serving import MAX_LORA_RANK, MESSAGES, ServingRuntime

# --- which dataset formats each method trains on ---------------------------------------------

METHOD_FORMATS: dict[Method, tuple[DatasetFormat, ...]] = {
    Method.SFT: (
        DatasetFormat.AUTO,
        DatasetFormat.CHAT,
        DatasetFormat.ALPACA,
        DatasetFormat.PROMPT_COMPLETION,
        DatasetFormat.TEXT,
        DatasetFormat.SHAREGPT,
    ),
    Method.CLASSIFICATION: (DatasetFormat.AUTO, DatasetFormat.CLASSIFICATION),
    Method.DPO: (DatasetFormat.AUTO, DatasetFormat.PREFERENCE),
}
METHOD_DATA = {
    Method.SFT: "conversations, instructions, prompt/completion pairs or plain text",
    Method.CLASSIFICATION: "text/label records",
    Method.DPO: "preference records (prompt/chosen/rejected)",
}


def method_format_message(method: Method) -> str:
    formats = ", ".join(f.value for f in METHOD_FORMATS[method])
    others = "; ".join(
        f"{', '.join(f.value for f in theirs if f is not DatasetFormat.AUTO)} data: use method {m.value}"
        for m, theirs in METHOD_FORMATS.items()
        if m is not method
    )
    return f"method {method.value} trains on {METHOD_DATA[method]}: dataset.format must be one of {formats} ({others})"


# --- fields that only one method reads ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MethodOnlyField:
    path: str  # wire path under spec, e.g. "training.dpoBeta"
    method: Method
    legacy_default: float | None = None
    """A value an older CRD defaulted the field to for every method: accepted (it changes nothing),
    so objects stored before the upgrade still validate."""

    @property
    def forbidden(self) -> Cond:
        if self.legacy_default is None:
            return Set(self.path)
        return both(Set(self.path), Not(Eq(self.path, self.legacy_default)))

    @property
    def message(self) -> str:
        return f"{self.path} is only used by method {self.method.value}; remove it or set method: {self.method.value}"


METHOD_ONLY_FIELDS = (
    MethodOnlyField("dataset.labels", Method.CLASSIFICATION),
    MethodOnlyField("training.dpoBeta", Method.DPO, legacy_default=DEFAULT_DPO_BETA),
)


METHOD_RULES = (
    *(
        Rule(
            Eq("method", m.value),
            In("dataset.format", tuple(f.value for f in formats)),
            method_format_message(m),
            field="dataset.format",
        )
        for m, formats in METHOD_FORMATS.items()
    ),
    *(
        Rule(f.forbidden, Eq("method", f.method.value), f.message, field=f.path, reason="FieldValueForbidden")
        for f in METHOD_ONLY_FIELDS
    ),
)
"""On spec and on the trainer's config (both carry method, dataset and training)."""
# --- serving: the paths a FineTuneJob asks for must fit its adapter and base model ------------

_ASKS = NonEmpty("serving.runtimes")
_OWN_RANK = Not(Set("model.adapter"))  # a continued adapter's rank is its own (the trainer checks it)
_CLASSIFIER = Eq("method", Method.CLASSIFICATION.value)
SERVING_RULES = (
    Rule(Set("serving.runtimes"), Distinct("serving.runtimes"), MESSAGES["twice"], field="serving.runtimes"),
    Rule(
        both(Set("serving.maxLoraRank"), _OWN_RANK),
        NotBelowField("serving.maxLoraRank", "peft.r"),
        MESSAGES["rank-below-r"],
        field="serving.maxLoraRank",
    ),
    Rule(
        both(_ASKS, _CLASSIFIER),
        OnlyValues("serving.runtimes", (ServingRuntime.KSERVE.value,)),
        MESSAGES["classification-llm"],
        field="serving.runtimes",
    ),
    Rule(
        both(_ASKS, _CLASSIFIER), Eq("output.merge", True), MESSAGES["classification-merge"], field="serving.runtimes"
    ),
    Rule(
        both(_ASKS, Not(_CLASSIFIER), _OWN_RANK),
        Not(AtLeast("peft.r", MAX_LORA_RANK + 1)),
        MESSAGES["rank-above-max"],
        field="peft.r",
    ),
)
"""On spec and on the trainer's config (both carry method, peft, model.adapter, output.merge and serving)."""
SERVING_SOURCE_RULES = (
    Rule(_ASKS, Not(StartsWith("model.source", ("/",))), MESSAGES["image-base"], field="serving.runtimes"),
    Rule(_ASKS, Not(Set("model.ggufFile")), MESSAGES["gguf-base"], field="serving.runtimes"),
    Rule(
        Contains("serving.runtimes", ServingRuntime.KAITO.value),
        StartsWith("model.source", ("hf://", "builtin:")),
        MESSAGES["kaito-base"],
        field="serving.runtimes",
    ),
    Rule(
        Contains("serving.runtimes", ServingRuntime.VLLM.value),
        Not(StartsWith("model.source", ("s3://",))),
        MESSAGES["vllm-s3-base"],
        field="serving.runtimes",
    ),
)
"""On spec only: they read model.source as the FineTuneJob names it (the trainer's config holds its mount)."""


SPEC_RULES = (
    *METHOD_RULES,
    *SERVING_RULES,
    *SERVING_SOURCE_RULES,
    Rule(
        Set("resources.gpuProduct"),
        AtLeast("resources.gpus", 1),
        "resources.gpuProduct needs resources.gpus >= 1",
        field="resources.gpuProduct",
    ),
    Rule(
        AtLeast("resources.nodes", 2),
        Not(Set("scheduling.affinity.podAntiAffinity")),
        "scheduling.affinity.podAntiAffinity is the operator's with resources.nodes above 1 (one trainer pod per "
        "node): leave it unset",
        field="scheduling.affinity",
    ),
)


# --- resources: sane bounds a node can hold --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuantityBound:
    field: str  # resources.<field> (wire name)
    minimum: str
    maximum: str
    why: str

    def message(self) -> str:
        return f"resources.{self.field} must be between {self.minimum} and {self.maximum} ({self.why})"


RESOURCE_BOUNDS = (
    QuantityBound("cpu", "100m", "1024", "a CPU request no node can hold blocks scheduling for everyone"),
    QuantityBound(
        "memory", "128Mi", "64Ti", "the limit also sizes the in-memory volumes: below it the pod cannot start"
    ),
    QuantityBound("shmSize", "1Mi", "64Ti", "the /dev/shm volume"),
)
SHM_WITHIN_MEMORY = "resources.shmSize must not exceed resources.memory (/dev/shm is memory counted against the limit)"


RESOURCE_RULES = (
    *(
        Rule(
            IsQuantity(b.field),
            QuantityBetween(b.field, b.minimum, b.maximum),
            b.message(),
            field=b.field,
        )
        for b in RESOURCE_BOUNDS
    ),
    Rule(
        both(IsQuantity("shmSize"), IsQuantity("memory")),
        QuantityNotAbove("shmSize", "memory"),
        SHM_WITHIN_MEMORY,
        field="shmSize",
    ),
    Rule(
        Set("rendezvousTimeoutSeconds"),
        AtLeast("nodes", 2),
        "resources.rendezvousTimeoutSeconds bounds the wait for the other nodes: it needs resources.nodes >= 2",
        field="rendezvousTimeoutSeconds",
    ),
)
"""On spec.resources (CEL's Kubernetes quantity library)."""

# --- the rest of the spec's objects -----------------------------------------------------------

PEFT_RULES = (
    Rule(
        Set("quantization"),
        Eq("type", "qlora"),
        "peft.quantization (4-bit settings) is only valid with peft.type qlora",
        field="quantization",
        reason="FieldValueForbidden",
    ),
)
TRAINING_RULES = (
    Rule(
        Set("epochs"),
        Not(Set("maxSteps")),
        "set at most one of training.epochs and training.maxSteps (with neither, 3 epochs are run)",
    ),
)
TOLERATION_RULES = (
    Rule(
        Eq("operator", "Exists"), Empty("value"), "a toleration with operator Exists must not set value", field="value"
    ),
    Rule(Empty("key"), Eq("operator", "Exists"), "a toleration without key must use operator Exists", field="operator"),
    Rule(
        Set("tolerationSeconds"),
        Eq("effect", "NoExecute"),
        "tolerationSeconds needs effect NoExecute",
        field="tolerationSeconds",
    ),
)
"""On each item of spec.scheduling.tolerations (the Pod API's own rules)."""

# --- paths: no '.' or '..' segments, absolute paths only into the image ------------------------

DOT_SEGMENT = "(^|/)[.][.]?(/|$)"
"""A '.' or '..' path segment (an RE2 and Python regex alike)."""
IMAGE_PATH_PREFIXES = ("/data/", "/models/")
"""Absolute paths name files baked into a custom trainer image, and only under these directories:
anything else (/etc, /proc, /var/run/secrets, the pod's own mounts) is not training data."""

OUTPUT_RULES = (
    Rule(
        Set("path"),
        Not(Matches("path", DOT_SEGMENT)),
        "output.path must not contain '.' or '..' segments",
        field="path",
    ),
)


def _source_rules(path: str) -> tuple[Rule, ...]:
    """The documented forms of the source field ``path`` (``object.field``), beyond its pattern."""
    field = path.split(".", 1)[1]
    return (
        Rule(
            Not(StartsWith(field, ("builtin:",))),
            Not(Matches(field, DOT_SEGMENT)),
            f"{path} must not contain '.' or '..' path segments",
            field=field,
        ),
        Rule(
            StartsWith(field, ("/",)),
            StartsWith(field, IMAGE_PATH_PREFIXES),
            f"{path}: an absolute path must name a file baked into the trainer image under "
            f"{' or '.join(IMAGE_PATH_PREFIXES)}; use pvc://<claim>/<path> for data on a volume",
            field=field,
        ),
    )


MODEL_SOURCE_RULE = Rule(
    Set("source"),
    Not(StartsWith("source", ("hf://datasets/",))),
    "model.source names a Hub dataset repo (hf://datasets/...), not a model",
    field="source",
)


def _by_object() -> dict[str, tuple[Rule, ...]]:
    found: dict[str, list[Rule]] = defaultdict(list)
    for path in INPUT_SOURCE_FIELDS:
        found[path.split(".", 1)[0]].extend(_source_rules(path))
    found["model"].append(MODEL_SOURCE_RULE)
    return {obj: tuple(rules) for obj, rules in found.items()}


SOURCE_RULES = _by_object()
"""The forms of the spec's sources (contract.INPUT_SOURCE_FIELDS), by the spec object they sit on
(model, dataset, evaluation). Only the FineTuneJob's spec carries them: the trainer's config holds
the mounted or downloaded paths."""


def _https_needs_sha256(field: str, sha_field: str) -> Rule:
    return Rule(
        StartsWith(field, ("https://",)),
        Set(sha_field),
        f"dataset.{field} is an https:// URL: set dataset.{sha_field} (its SHA-256) so the download can be checked",
        field=sha_field,
        reason="FieldValueRequired",
    )


DATASET_RULES = (_https_needs_sha256("source", "sha256"), _https_needs_sha256("validationSource", "validationSha256"))
"""On spec.dataset and the trainer config's dataset: an https:// download is checked against a given SHA-256."""
