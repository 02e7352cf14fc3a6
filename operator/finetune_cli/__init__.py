"""`kubectl-finetune` (also `kubectl finetune`, as a kubectl plugin): user-side commands that need
the Kubernetes API (through kubectl) and the trainer's own dataset validator, but no torch."""
