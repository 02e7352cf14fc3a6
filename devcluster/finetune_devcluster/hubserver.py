"""A stand-in for the Hugging Face Hub's download endpoints, for tests that cannot reach the Hub.

    python -m finetune_devcluster.hubserver --bind ADDR --config repos.json --cert CRT --key KEY --port-file F

It answers what `huggingface_hub`'s `snapshot_download`, `hf_hub_download`, `HfApi.repo_info` and
`HfApi.list_repo_tree` ask, the way the Hub does (the client is pointed at it with HF_ENDPOINT):

    GET  /api/{models|datasets}/<org>/<name>[/revision/<rev>]    repo info: sha (the commit), siblings
    GET  /api/{models|datasets}/<org>/<name>/tree/<rev>[/<dir>]  files: path, size, oid (git blob sha1),
                                                                  lfs {oid: sha256, size} for LFS files
    HEAD|GET /[datasets/]<org>/<name>/resolve/<rev>/<path>       the file, with X-Repo-Commit, ETag (the
                                                                  blob sha1, or the sha256 for LFS files),
                                                                  X-Linked-Etag/X-Linked-Size, Range support

and fails as the Hub does, with its X-Error-Code header: RepoNotFound (404), RevisionNotFound (404),
EntryNotFound (404), GatedRepo (401 without a token, 403 with a token that has no access), 401
"Invalid credentials in Authorization header" for an unknown token.

Each repo of the config JSON is a directory served as one commit (its sha1 is computed from the
files), reachable as `main`, its tags and the commit itself:

    {"token": "...", "tokenWithoutAccess": "...",
     "repos": [{"type": "model", "id": "org/name", "dir": "/path", "tags": ["v1.0"],
                "gated": false, "corrupt": ["model.safetensors"], "cut": ["model.safetensors"]}]}

`corrupt` files are served with one byte changed (same size) under the original hashes; `cut` files
stop halfway through the body, and a resumed (Range) request gets no body at all.

This is a protocol-level stand-in: no uploads, no Xet, one commit per repo.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileserver import serve_tls, tls_arguments

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".parquet", ".pt", ".onnx", ".h5", ".msgpack")
LFS_MIN_SIZE = 100 * 1024  # larger files are LFS files too (as .gitattributes puts big data files)
API = re.compile(r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/(?P<op>revision|tree)/(?P<rest>.+))?$")
RESOLVE = re.compile(r"^/(?P<kind>datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class RepoFile:
    path: str
    data: bytes
    blob: str  # git blob sha1
    sha256: str

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or len(self.data) >= LFS_MIN_SIZE

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.blob, "size": len(self.data), "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return entry


@dataclass
class Repo:
    kind: str  # "model" or "dataset"
    id: str
    files: dict[str, RepoFile]
    tags: list[str] = field(default_factory=list)
    gated: bool = False
    corrupt: frozenset[str] = frozenset()
    cut: frozenset[str] = frozenset()

    @property
    def commit(self) -> str:
        listing = "".join(f"{p}\0{f.blob}\n" for p, f in sorted(self.files.items()))
        return hashlib.sha1(f"commit {self.id}\n{listing}".encode()).hexdigest()

    def resolves(self, revision: str) -> bool:
        return revision in ("main", self.commit, *self.tags)


@functools.cache
def read_files(directory: str) -> dict[str, RepoFile]:
    """The files under `directory` with their hashes (read once however many repos share it)."""
    root = Path(directory)
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        files[rel] = RepoFile(rel, data, blob, hashlib.sha256(data).hexdigest())
    return files


def load_repo(spec: dict[str, Any]) -> Repo:
    return Repo(
        spec.get("type", "model"),
        spec["id"],
        read_files(spec["dir"]),
        list(spec.get("tags", [])),
        bool(spec.get("gated", False)),
        frozenset(spec.get("corrupt", [])),
        frozenset(spec.get("cut", [])),
    )


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class Handler(http.server.BaseHTTPRequestHandler):
    repos: dict[tuple[str, str], Repo] = {}
    token = ""
    token_without_access = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(body=False)

    def _dispatch(self, body: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        try:
            if m := API.match(path):
                repo = self._repo("model" if m["kind"] == "models" else "dataset", m["repo"])
                self._api(repo, m["op"], m["rest"] or "main", urllib.parse.parse_qs(url.query))
            elif m := RESOLVE.match(path):
                repo = self._repo("dataset" if m["kind"] else "model", m["repo"])
                self._resolve(repo, m["rev"], m["path"], body)
            else:
                raise HubError(404, None, "Not Found")
        except HubError as err:
            self._error(err)

    def _repo(self, kind: str, repo_id: str) -> Repo:
        repo = self.repos.get((kind, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository not found: {kind} {repo_id}")
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if token and token not in (self.token, self.token_without_access):
            raise HubError(401, None, "Invalid credentials in Authorization header")
        if repo.gated and token != self.token:
            status = 403 if token else 401
            raise HubError(
                status, "GatedRepo", f"Access to {kind} {repo_id} is restricted and you are not in the authorized list."
            )
        return repo

    def _revision(self, repo: Repo, revision: str) -> str:
        if not repo.resolves(revision):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo.commit

    def _api(self, repo: Repo, op: str | None, rest: str, query: dict[str, list[str]]) -> None:
        if op == "tree":
            revision, _, prefix = rest.partition("/")
            self._revision(repo, revision)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._json(tree(repo, prefix.strip("/"), recursive))
            return
        commit = self._revision(repo, rest)
        self._json(
            {
                "_id": commit[:24],
                "id": repo.id,
                "sha": commit,
                "private": False,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
        )

    def _resolve(self, repo: Repo, revision: str, path: str, body: bool) -> None:
        commit = self._revision(repo, revision)
        file = repo.files.get(path)
        if file is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", commit)
        data = file.data
        if path in repo.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = _range_start(self.headers.get("Range"))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{file.etag}"')
        if file.lfs:
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if path in repo.cut:  # half the body, and nothing at all once the client resumes
            self.wfile.write(b"" if start else data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:])

    def _json(self, value: object) -> None:
        payload = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _error(self, err: HubError) -> None:
        payload = json.dumps({"error": err.message}).encode()
        self.send_response(err.status)
        if err.code:
            self.send_header("X-Error-Code", err.code)
        self.send_header("X-Error-Message", err.message)
        if err.commit:
            self.send_header("X-Repo-Commit", err.commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        print(f"{self.address_string()} {format % args}", flush=True)


def tree(repo: Repo, prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """The Hub's tree listing of `prefix` (files, and the directories under it)."""
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict[str, Any]] = {}
    for path, file in sorted(repo.files.items()):
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts)):
            directory = base + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(directory, {"type": "directory", "oid": "0" * 40, "size": 0, "path": directory})
        if recursive or len(parts) == 1:
            entries[path] = file.tree_entry()
    if prefix and not entries:
        raise HubError(404, "EntryNotFound", f"{prefix} does not exist")
    return list(entries.values())


def _range_start(header: str | None) -> int:
    m = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(m.group(1)) if m else 0


def main() -> None:
    parser = tls_arguments(__doc__ or "")
    parser.add_argument("--config", required=True, type=Path, help="the repos (JSON, see the module doc)")
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    Handler.repos = {(r.kind, r.id): r for r in map(load_repo, config["repos"])}
    Handler.token = config.get("token", "")
    Handler.token_without_access = config.get("tokenWithoutAccess", "")
    serve_tls(Handler, args)


if __name__ == "__main__":
    main()
