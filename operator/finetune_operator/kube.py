"""A small asyncio Kubernetes REST client on aiohttp (which kopf already uses).

It is built from the same ``kopf.ConnectionInfo`` kopf logs in with, so the operator has one
notion of credentials (in-cluster service account, or a kubeconfig with a token, client
certificate or basic auth). Responses are plain dicts; no model classes, no threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp

logger = logging.getLogger("finetune_operator.kube")

SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str = "", path: str = ""):
        self.status = status
        self.body = body
        reason = body.get("reason") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else str(body)[:500]
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {status} {reason or ''}: {message}")


def _data_file(data: str | bytes, suffix: str) -> str:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="finetune-operator-")
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    return path


def ssl_context(info: Any) -> ssl.SSLContext | bool:
    if not str(info.server).startswith("https"):
        return False
    if info.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.ca_data:
        raw = base64.b64decode(info.ca_data) if isinstance(info.ca_data, str) else info.ca_data
        ctx = ssl.create_default_context(cadata=raw.decode())
    elif info.ca_path:
        ctx = ssl.create_default_context(cafile=os.fspath(info.ca_path))
    else:
        ctx = ssl.create_default_context()
    cert = info.certificate_path or (info.certificate_data and _data_file(info.certificate_data, ".crt"))
    key = info.private_key_path or (info.private_key_data and _data_file(info.private_key_data, ".key"))
    if cert:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key) if key else None)
    return ctx


class KubeClient:
    """``await client.get('/api/v1/namespaces/ns/pods/x')`` etc. Raises ApiError on HTTP errors."""

    def __init__(self, info: Any, *, limit: int = 50, on_request: Callable[[str], None] | None = None):
        self.info = info
        self.server = str(info.server).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context(info)
        self._token = info.token
        self._token_read = time.monotonic()
        self._limit = limit
        self._trace: list[aiohttp.TraceConfig] = []
        if on_request is not None:  # aiohttp's public request tracing: on_request(method) per request sent
            trace = aiohttp.TraceConfig()

            async def count(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
                on_request(params.method.upper())

            trace.on_request_start.append(count)
            self._trace.append(trace)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "finetune-operator"}
        token = self._token
        if os.path.exists(SA_TOKEN_PATH) and time.monotonic() - self._token_read > 60:
            with open(SA_TOKEN_PATH, encoding="utf-8") as f:  # projected tokens rotate
                token = self._token = f.read().strip()
            self._token_read = time.monotonic()
        if token:
            headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {token}"
        elif self.info.username and self.info.password:
            raw = f"{self.info.username}:{self.info.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit),
                timeout=aiohttp.ClientTimeout(total=30),
                trace_configs=self._trace,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        session = await self.session()
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        for attempt in range(4):
            try:
                async with session.request(
                    method, self.server + path, data=data, headers=headers, params=params
                ) as resp:
                    text = await resp.text()
                    try:
                        payload = json.loads(text) if text else None
                    except ValueError:
                        payload = text
                    if resp.status == 429 or (resp.status >= 500 and attempt < 3 and method == "GET"):
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status >= 400:
                        raise ApiError(resp.status, payload, method, path)
                    return payload
            except (TimeoutError, aiohttp.ClientConnectionError):
                if attempt == 3:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise ApiError(429, {"message": "too many requests"}, method, path)

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.request("GET", path, **kw)

    async def create(self, path: str, body: Any, params: dict[str, str] | None = None) -> Any:
        return await self.request("POST", path, body, params=params)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body)


# --- paths ------------------------------------------------------------------------------------

_PATHS = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims"),
    ("v1", "Event"): ("/api/v1", "events"),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("coordination.k8s.io/v1", "Lease"): ("/apis/coordination.k8s.io/v1", "leases"),
}


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    if (api_version, kind) in _PATHS:
        prefix, plural = _PATHS[(api_version, kind)]
    elif kind == "FineTuneJob":
        prefix, plural = f"/apis/{api_version}", "finetunejobs"
    else:
        raise KeyError(f"unknown kind {api_version}/{kind}")
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta['namespace'])}/{meta['name']}"
