"""Marks every integration test with what it needs (the markers of pyproject.toml), by directory:
a new directory here says what its tests need in NEEDS."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
NEEDS = {
    "chart": ("cluster",),  # helm, and the control plane for installs and admission
    "fetch": ("cluster",),  # the download servers (S3, HTTPS, the Hub stand-in) on the dev cluster's address
    "harness": ("cluster",),  # the dev cluster itself, its kwok nodes and its real node
    "operator": ("cluster",),
    "images": ("images",),  # builds the images and runs them with runc
    "packaging": ("network",),  # installs finetune_api from PyPI into a fresh venv
    "upload": ("cluster",),  # kubectl finetune upload: a pod on the real node writes a local claim
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue
        directory = item.path.relative_to(HERE).parts[0]
        if directory not in NEEDS:
            raise pytest.UsageError(f"tests/integration/{directory}: say what its tests need in NEEDS ({__file__})")
        for marker in NEEDS[directory]:
            item.add_marker(marker)
