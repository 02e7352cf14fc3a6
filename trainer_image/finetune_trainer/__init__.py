"""The containerized LoRA/QLoRA trainer run by FineTuneJob batch Jobs.

Entry point: ``finetune-train`` (:mod:`finetune_trainer.cli`). The pipeline and its seam for
training methods are described at the top of :mod:`finetune_trainer.pipeline`.
This package must never import kopf or the kubernetes client.
"""

__all__ = ["__version__"]
__version__ = "0.2.0.dev0"
