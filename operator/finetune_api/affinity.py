"""core/v1 Affinity as typed models: a misspelt or unknown key is refused with its field path
instead of being dropped on its way to the trainer pod (the API server prunes fields a schema does
not know). Field names and rules follow the Pod API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ApiModel
from .names import LabelValue, QualifiedName

MAX_ITEMS = 64


class NodeSelectorRequirement(ApiModel):
    """A node label (or field) requirement."""

    key: QualifiedName
    """The label key (or field name) the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the key relates to the values."""
    values: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Values; non-empty for In/NotIn, one integer for Gt/Lt, empty for Exists/DoesNotExist."""


class NodeSelectorTerm(ApiModel):
    """Requirements that are ANDed."""

    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Requirements on node labels."""
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Requirements on node fields."""


class NodeSelector(ApiModel):
    """Terms that are ORed."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=MAX_ITEMS)
    """The terms; a node matching any of them is selected."""


class PreferredSchedulingTerm(ApiModel):
    """A weighted preference for nodes."""

    weight: int = Field(ge=1, le=100)
    """Weight, 1-100."""
    preference: NodeSelectorTerm
    """The nodes preferred."""


class NodeAffinity(ApiModel):
    """Node affinity rules of the trainer pod."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pod must run on."""
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    """Nodes the scheduler prefers."""


class LabelSelectorRequirement(ApiModel):
    """A label requirement of a label selector."""

    key: QualifiedName
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[LabelValue] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Values; non-empty for In/NotIn, empty for Exists/DoesNotExist."""


class LabelSelector(ApiModel):
    """A metav1 LabelSelector."""

    match_labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=MAX_ITEMS)
    """Labels a pod must have."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Requirements, ANDed."""


class PodAffinityTerm(ApiModel):
    """Pods (matching labelSelector in namespaces) the trainer pod should be near or away from."""

    label_selector: LabelSelector | None = None
    """The pods."""
    namespaces: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Namespaces of those pods; empty means the trainer's own."""
    namespace_selector: LabelSelector | None = None
    """Namespaces of those pods, by label."""
    topology_key: QualifiedName
    """The node label whose value defines "near" (e.g. kubernetes.io/hostname, topology.kubernetes.io/zone)."""
    match_label_keys: list[QualifiedName] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Label keys of the incoming pod whose values are ANDed into labelSelector."""
    mismatch_label_keys: list[QualifiedName] = Field(default_factory=list, max_length=MAX_ITEMS)
    """Label keys of the incoming pod whose values must differ."""


class WeightedPodAffinityTerm(ApiModel):
    """A weighted pod (anti-)affinity preference."""

    weight: int = Field(ge=1, le=100)
    """Weight, 1-100."""
    pod_affinity_term: PodAffinityTerm
    """The term."""


class PodAffinity(ApiModel):
    """Pod affinity (or anti-affinity) rules of the trainer pod."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    """Terms that must hold."""
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    """Terms the scheduler prefers."""


class Affinity(ApiModel):
    """A core/v1 Affinity."""

    node_affinity: NodeAffinity | None = None
    """Node affinity."""
    pod_affinity: PodAffinity | None = None
    """Pod affinity."""
    pod_anti_affinity: PodAffinity | None = None
    """Pod anti-affinity."""
