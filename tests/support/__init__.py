"""Helpers shared by the test suites and hack/adversarial.py, imported as `support.*` (tests/ is on
pytest's `pythonpath`, see pyproject.toml)."""
