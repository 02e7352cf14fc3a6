"""Running `finetune-train fetch` as the cluster would: a separate process, its env, its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_devcluster.dataservers import HubServer, ObjectStore


@dataclass
class FetchResult:
    code: int
    output: dict[str, Any]
    """The JSON line (a FetchRecord), or the termination message's failure summary."""
    stderr: str


def fetch_env(
    s3: ObjectStore | None = None, hub: HubServer | None = None, ca: Path | None = None, **extra: str
) -> dict[str, str]:
    """The environment the operator gives the fetch container: object-store credentials and endpoint,
    the Hub endpoint and token, the extra CA bundle."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "HF_HUB_DISABLE_TELEMETRY": "1"}
    if s3 is not None:
        env |= {
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_ENDPOINT_URL": s3.url,
            "AWS_REGION": s3.region,
        }
    if hub is not None:
        env |= {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token}
    if ca is not None:
        env["FINETUNE_CA_BUNDLE"] = str(ca)
    return env | extra


def start_fetch(into: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    term = into.parent / f".term-{len(list(into.parent.glob('.term-*')))}"
    argv = [sys.executable, "-m", "finetune_trainer", "fetch", "--into", str(into), *args]
    argv += ["--termination-message-path", str(term)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> FetchResult:
    out, err = proc.communicate(timeout=timeout)
    term = Path(proc.args[proc.args.index("--termination-message-path") + 1])  # type: ignore[index, union-attr]
    text = out.strip() or (term.read_text() if term.exists() else "{}")
    return FetchResult(proc.returncode, json.loads(text.splitlines()[-1]), err)


def run_fetch(into: Path, env: dict[str, str], *args: str, timeout: float = 180) -> FetchResult:
    return finish(start_fetch(into, env, *args), timeout)


def leftovers(into: Path) -> list[str]:
    """What a failed fetch must not leave: entries, or anything in the temporary area."""
    entries = [p.name for p in into.iterdir() if not p.name.startswith(".")] if into.exists() else []
    tmp = [p.name for p in (into / ".tmp").iterdir()] if (into / ".tmp").exists() else []
    return entries + tmp


def s3_client(s3: ObjectStore, secret: str | None = None, url: str | None = None):  # noqa: ANN201 - boto3 client
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url or s3.url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=secret or s3.secret_key,
        region_name=s3.region,
        verify=str(s3.ca),
        config=Config(s3={"addressing_style": "path"}),
    )
