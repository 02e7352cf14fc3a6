"""Benchmark instrumentation, imported at start-up by the benchmark's subprocesses (their
PYTHONPATH holds this directory). Does nothing unless asked:

* ``FINETUNE_BENCH_PROFILE=<file.json>``: profile two training steps (``FINETUNE_BENCH_PROFILE_STEPS``,
  default ``5,6``) of any transformers Trainer in the process: a CUDA memory history (what is live
  at the peak, by allocation site), the parameters' memory by kind, and the CUDA kernels' times.
* ``FINETUNE_BENCH_PREVIOUS_KBIT=1``: the trainer prepares a 4-bit model the way it did before
  (peft's ``prepare_model_for_kbit_training``: every weight that is not 4-bit cast to fp32), to
  measure the previous version side by side.
"""

import os

if os.environ.get("FINETUNE_BENCH_PROFILE") or os.environ.get("FINETUNE_BENCH_PREVIOUS_KBIT"):
    import bench_profile

    bench_profile.install()
