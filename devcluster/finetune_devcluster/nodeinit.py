"""PID 1 of the dev node's PID namespace: reaps orphans (containerd's shims are re-parented here)
and does nothing else. When it dies, the kernel kills every process of the node, containers
included; the node stops it by killing it."""

from __future__ import annotations

import os
import time


def main() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:  # no children right now
            time.sleep(1)


if __name__ == "__main__":
    main()
