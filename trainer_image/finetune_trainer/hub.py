"""Models and dataset files from the Hugging Face Hub (`huggingface_hub`), checked against the Hub's hashes.

`hf://<org>/<name>` is a model: every file of the repo at the revision. `hf://datasets/<org>/<name>/<path>`
is a dataset: the file `<path>` when it ends in .jsonl or .json, otherwise the split `<path>`: the repo's
JSON Lines files of that split by the Hub's naming convention (`<split>.jsonl`, `data/<split>.jsonl`,
`data/<split>-00000-of-00002.jsonl`, `<split>/*.jsonl`), concatenated in name order.

The revision (branch, tag or commit; `main` by default) is resolved to its commit once, and everything
is read at that commit. Each file is checked against the Hub's tree listing: the SHA-256 of LFS files,
the git blob SHA-1 of the others, and the size. The endpoint is HF_ENDPOINT, the token HF_TOKEN.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from finetune_api.protocol import FetchedFile

from .downloads import Fetched, free_space_check
from .errors import (
    CacheFullError,
    ChecksumMismatchError,
    DownloadFailedError,
    RevisionNotFoundError,
    SourceForbiddenError,
    SourceNotFoundError,
    TrainerError,
)

VERIFIED_WITH = "hub-lfs-sha256+git-blob-sha1"
DATA_SUFFIXES = (".jsonl", ".json")


def parse_hub(source: str) -> tuple[str, str, str | None]:
    """`hf://datasets/o/n/p` -> ("dataset", "o/n", "p"); `hf://o/n` -> ("model", "o/n", None)."""
    rest = source.removeprefix("hf://")
    if rest.startswith("datasets/"):
        org, name, path = rest.removeprefix("datasets/").split("/", 2)
        return "dataset", f"{org}/{name}", path
    return "model", rest, None


def split_files(paths: list[str], split: str) -> list[str]:
    """The JSON Lines files of `split` in a dataset repo, in name order."""
    s = re.escape(split)
    pattern = re.compile(rf"^((data/)?{s}([-._][^/]*)?|{s}/[^/]+)\.jsonl$")
    return sorted(p for p in paths if pattern.match(p))


@contextlib.contextmanager
def hub_errors(source: str, revision: str) -> Iterator[None]:
    """The Hub's and the network's errors as our failure reasons, naming the source."""
    from huggingface_hub import errors

    try:
        yield
    except TrainerError:
        raise
    except errors.RevisionNotFoundError:
        raise RevisionNotFoundError(f"{source}: the repo has no revision {revision!r}") from None
    except errors.GatedRepoError:
        raise SourceForbiddenError(f"{source}: a gated repo; the token (HF_TOKEN) has no access to it") from None
    except errors.RepositoryNotFoundError:
        raise SourceNotFoundError(f"{source}: no such repo (or a private one the token cannot read)") from None
    except errors.RemoteEntryNotFoundError:
        raise SourceNotFoundError(f"{source}: no such file at revision {revision!r}") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise SourceForbiddenError(f"{source}: the Hub refused access ({status}): check the token") from None
        raise DownloadFailedError(f"{source}: the Hub answered {status}: {_first_line(exc)}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheFullError(f"{source}: no space left on the destination volume") from None
        raise DownloadFailedError(f"{source}: {_first_line(exc)}") from None
    except Exception as exc:  # httpx2's connection and protocol errors
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise DownloadFailedError(f"{source}: {type(exc).__name__}: {_first_line(exc)}") from None
        raise


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def fetch_hub(source: str, revision: str | None, into: Path) -> Fetched:
    """Download a model repo or a dataset file/split into `into`, checked against the Hub's hashes."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    repo_type, repo_id, path = parse_hub(source)
    rev = revision or "main"
    api = HfApi()
    with hub_errors(source, rev):
        commit = api.repo_info(repo_id, repo_type=repo_type, revision=rev).sha
        tree = {
            f.path: f
            for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        }
    wanted = _select(source, tree, path)
    free_space_check(into, sum(tree[p].size for p in wanted), source)
    stage = into / ".hub" if path else into
    with hub_errors(source, rev):
        for p in wanted:
            hf_hub_download(repo_id, p, repo_type=repo_type, revision=commit, local_dir=stage)
    shutil.rmtree(stage / ".cache", ignore_errors=True)
    files = [_verify(source, stage / p, p, tree[p]) for p in wanted]
    total = sum(f.size_bytes for f in files)
    if not path:
        return Fetched(files, VERIFIED_WITH, total, commit=commit)
    name = PurePath(path).name if path.endswith(DATA_SUFFIXES) else f"{path}.jsonl"
    with hub_errors(source, rev):
        data = _join(stage, wanted, into / name)
    shutil.rmtree(stage)
    return Fetched([data], VERIFIED_WITH, total, commit=commit, data_file=name)


def _select(source: str, tree: dict[str, Any], path: str | None) -> list[str]:
    if path is None:
        return sorted(tree)
    if path.endswith(DATA_SUFFIXES):
        if path not in tree:
            raise SourceNotFoundError(f"{source}: the dataset repo has no file {path!r}")
        return [path]
    files = split_files(list(tree), path)
    if not files:
        raise SourceNotFoundError(
            f"{source}: the dataset repo has no JSON Lines files of split {path!r} "
            f"({path}.jsonl, data/{path}-*.jsonl or {path}/*.jsonl)"
        )
    return files


def _verify(source: str, file: Path, rel: str, entry: Any) -> FetchedFile:
    sha256, sha1, size = hashlib.sha256(), hashlib.sha1(), file.stat().st_size
    sha1.update(b"blob %d\0" % size)
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    if size != entry.size:
        raise ChecksumMismatchError(f"{source}: {rel} has {size} bytes, the Hub says {entry.size}")
    if entry.lfs is not None and sha256.hexdigest() != entry.lfs.sha256:
        raise ChecksumMismatchError(f"{source}: {rel} has sha256 {sha256.hexdigest()}, the Hub says {entry.lfs.sha256}")
    if entry.lfs is None and sha1.hexdigest() != entry.blob_id:
        raise ChecksumMismatchError(f"{source}: {rel} has git blob {sha1.hexdigest()}, the Hub says {entry.blob_id}")
    return FetchedFile(path=rel, size_bytes=size, sha256=sha256.hexdigest())


def _join(stage: Path, parts: list[str], out: Path) -> FetchedFile:
    """The split's files as one JSON Lines file (a file of one part is copied as it is)."""
    digest, size = hashlib.sha256(), 0
    with open(out, "wb") as dst:
        for i, rel in enumerate(parts):
            data = (stage / rel).read_bytes()
            if i < len(parts) - 1 and data and not data.endswith(b"\n"):
                data += b"\n"
            dst.write(data)
            digest.update(data)
            size += len(data)
    return FetchedFile(path=out.name, size_bytes=size, sha256=digest.hexdigest())
