"""Kubernetes naming rules (the API server's own validation), as pydantic-ready types.

The CRD schema is generated from these, so a FineTuneJob whose pod labels, annotations, node
selector, tolerations or Secret reference the API server would refuse on the trainer Job is
refused when the FineTuneJob itself is created, with the field named.
"""

from typing import Annotated

from pydantic import Field

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label or annotation key: an optional DNS-subdomain prefix and "/", then a name of at most
# 63 characters (metav1 validation's IsQualifiedName).
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # a key of a Secret's or ConfigMap's data

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
QualifiedName = Annotated[str, Field(min_length=1, max_length=317, pattern=QUALIFIED_NAME_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]

MAX_NAME_LENGTH = 52
"""Longest FineTuneJob name: its children are ``<name>-trainer`` / ``<name>-config`` /
``<name>-cleanup``, and a Job's name must fit the 63-character ``job-name`` label of its pods
(kubebuilder's CronJob sample uses the same limit for the same reason)."""
NAME_LENGTH_MESSAGE = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters (the trainer Job is named <name>-trainer)"
)
"""The CRD's name rule and the operator's check of a stored object say the same."""
