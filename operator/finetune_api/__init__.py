"""API types of finetune.dev/v1alpha1 FineTuneJob.

This package is the single source of truth for the resource's spec and status and for
the trainer's config. It depends only on pydantic, so the trainer image imports it
without kopf or the Kubernetes client.
"""

GROUP = "finetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
SINGULAR = "finetunejob"
SHORT_NAMES = ["ftj"]
CATEGORIES = ["finetune", "ml"]
