"""The FineTuneJob operator (kopf): turns finetune.dev/v1alpha1 FineTuneJobs into batch/v1 Jobs.

Layers (see docs/operator.md):

* ``config``   - operator settings from CLI flags and environment variables.
* ``builders`` - pure functions: FineTuneJob -> TrainerConfig, ConfigMap, ServiceAccount, Role,
  RoleBinding, Job.
* ``status``   - pure function: FineTuneJob + Job + Pod -> FineTuneJob status.
* ``kube``     - a small asyncio Kubernetes REST client (aiohttp, the same connection kopf uses).
* ``handlers`` - thin kopf handlers that do the I/O.
* ``metrics``, ``health``, ``leader``, ``main`` - process plumbing.

Nothing here imports torch or the trainer.
"""
