"""Helpers shared by the test suites (importable as `support.*`: tests/ is the rootdir of conftest.py)."""
