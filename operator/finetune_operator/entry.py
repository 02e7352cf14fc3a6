"""The ``finetune-operator`` console script.

kopf imports the ``kubernetes`` client package when it is installed (it is, in development
virtualenvs; the operator image has none), only to recognise that library's model objects in
``kopf.adopt()`` & co. The operator never uses it (its own client is ``kube.py``); keeping it out of
the process saves 10-20 MB of RSS (docs/benchmarks.md). So the process marks it absent first, then
imports kopf with the operator: here, when the process starts, not when a module is imported (a
test that imports the operator's modules keeps its ``kubernetes``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from .main import main as run

    run(argv)


if __name__ == "__main__":
    main()
