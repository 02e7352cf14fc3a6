"""``finetune-train serve``: answer HTTP requests with a finished adapter, from the trainer image.

    finetune-train serve --adapter DIR [--model SRC] [--name NAME] [--host 0.0.0.0] [--port 8080]

The base model is the one ``adapter_config.json`` names (its portable reference): a Hub id that one
of the built-in models comes from resolves to that built-in model (offline; the weights the
demo's adapters were trained on), another Hub id to ``hf://`` (needs network and, for gated
models, ``HF_TOKEN``), ``pvc://<claim>/<path>`` to ``/mnt/pvc/<claim>/<path>`` (mount the claim
there). ``--model`` overrides it. The adapter directory is only read.

The protocol is KServe's v1 (the one KServe's Hugging Face runtime speaks too)::

    GET  /                           {"status": "alive"}
    GET  /v1/models/<name>           {"name": "<name>", "ready": true}
    POST /v1/models/<name>:predict   {"instances": [...], "parameters": {"max_tokens": 64}}
                                     -> {"predictions": [...]}

A classifier's instance is a text and its prediction ``{"label", "index"}`` (the same batching
and truncation as the trainer's evaluation). A causal LM's instance is a prompt text or
``{"messages": [...]}`` (rendered with the chat template, as in training) and its prediction
``{"text"}``, decoded greedily like the trainer's sample generations. Errors answer with
``{"error": "<one line>"}``. This is a CPU stand-in for tests and small models, not a
production server: requests are answered one at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from finetune_api.training import ModelSpec

from .errors import ConfigError, ModelNotFoundError
from .manifests import SEQ_CLS, mount_path
from .models import ModelLocation, builtin_for_hub_id, load_causal_lm, load_tokenizer, resolve_source

log = logging.getLogger("finetune_trainer")

MAX_BODY_BYTES = 1 << 20
MAX_INSTANCES = 256
DEFAULT_MAX_SEQ_LENGTH = 512


class BadRequest(ValueError):
    """A request the server cannot answer (HTTP 400), with a one-line reason."""


def base_source(adapter_config: dict) -> ModelSpec:
    """The base model to load for an adapter, from its portable reference (see the module docstring)."""
    ref = str(adapter_config.get("base_model_name_or_path") or "")
    if not ref:
        raise ModelNotFoundError("adapter_config.json names no base model (base_model_name_or_path)")
    if ref.startswith("pvc://"):
        return ModelSpec(source=mount_path(ref))
    if ref.startswith("/"):
        return ModelSpec(source=ref)
    builtin = builtin_for_hub_id(ref)
    if builtin is not None:
        return ModelSpec(source=f"builtin:{builtin}")
    return ModelSpec(source=f"hf://{ref}", revision=adapter_config.get("revision"))


@dataclass
class Served:
    """A loaded adapter and what answering needs."""

    name: str
    task_type: str
    model: Any
    tokenizer: Any
    labels: list[str]
    training: dict
    """trainer_config.json's training settings (maxSeqLength, batchSize), where the adapter has it."""
    lock: threading.Lock

    @property
    def max_seq_length(self) -> int:
        return int(self.training.get("maxSeqLength") or DEFAULT_MAX_SEQ_LENGTH)

    def predict(self, instances: list, parameters: dict) -> list[dict]:
        with self.lock:
            if self.task_type == SEQ_CLS:
                return self._classify(instances)
            return [self._generate(i, int(parameters.get("max_tokens", 64))) for i in instances]

    def _classify(self, instances: list) -> list[dict]:
        from .classification import encode, predict

        if not all(isinstance(i, str) for i in instances):
            raise BadRequest("a classifier's instances are texts")
        placeholder = {self.labels[0]: 0}  # predict() also computes a loss; the label is not used
        records = [{"text": text, "label": self.labels[0]} for text in instances]
        examples = encode(self.tokenizer, records, placeholder, self.max_seq_length)
        # the batches of the trainer's evaluation: the same padding, so the same logits
        given = self.training.get("batchSize")  # an int, or "auto" (then the planned size is not recorded)
        batch_size = max(8, given if isinstance(given, int) else 8)
        ids, _ = predict(self.model, examples, self.tokenizer.pad_token_id, batch_size)
        return [{"label": self.labels[i], "index": i} for i in ids]

    def _generate(self, instance: Any, max_tokens: int) -> dict:
        from .evaluation import generate
        from .sft import prompt_for_sample

        if isinstance(instance, str):
            example: dict = {"prompt": instance, "completion": ""}
        elif isinstance(instance, dict) and isinstance(instance.get("messages"), list):
            example = {"messages": [*instance["messages"], {"role": "assistant", "content": ""}]}
        else:
            raise BadRequest('an instance is a prompt text or {"messages": [...]}')
        if not 1 <= max_tokens <= 4096:
            raise BadRequest("parameters.max_tokens must be between 1 and 4096")
        found = prompt_for_sample(self.tokenizer, example)
        if found is None:
            raise BadRequest("the prompt is empty")
        ids = found[0][-self.max_seq_length :]
        return {"text": generate(self.model, self.tokenizer, ids, max_tokens)}


def load(adapter: str, model: str | None = None, name: str | None = None) -> Served:
    """Load the base model (from the adapter's reference, or ``model``) and the adapter."""
    from .methods import open_adapter

    path = Path(adapter)
    try:
        cfg = json.loads((path / "adapter_config.json").read_text())
    except OSError:
        raise ModelNotFoundError(f"adapter {adapter}: no adapter_config.json there") from None
    except ValueError as exc:
        raise ModelNotFoundError(f"adapter {adapter}: adapter_config.json is not valid JSON: {exc}") from None
    try:
        spec = ModelSpec(source=model) if model else base_source(cfg)
    except ValueError:  # pydantic's ValidationError
        raise ConfigError(
            f"--model {model!r}: not a model source (a directory, hf://org/name or builtin:name)"
        ) from None
    location = resolve_source(spec)
    log.info("base model %s (adapter_config.json: %s)", spec.source, cfg.get("base_model_name_or_path"))
    tokenizer = load_tokenizer(ModelLocation(str(path), str(path)))
    task = str(cfg.get("task_type") or "CAUSAL_LM")
    labels: list[str] = []
    if task == SEQ_CLS:
        from .classification import load_classifier, read_label_map

        labels = read_label_map(path)
        base, _ = load_classifier(location, labels, tokenizer)
    elif task == "CAUSAL_LM":
        base = load_causal_lm(location)
    else:
        raise ConfigError(f"adapter {adapter}: task type {task!r} is not served (CAUSAL_LM or SEQ_CLS)")
    peft_model = open_adapter(base, str(path))
    peft_model.eval()
    return Served(name or path.name, task, peft_model, tokenizer, labels, _training(path), threading.Lock())


def _training(adapter: Path) -> dict:
    """The training run's settings (trainer_config.json next to the adapter); {} without one."""
    try:
        training = json.loads((adapter / "trainer_config.json").read_text())["training"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return training if isinstance(training, dict) else {}


def make_handler(served: Served) -> type[BaseHTTPRequestHandler]:
    model_path = f"/v1/models/{served.name}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/":
                self._reply(200, {"status": "alive"})
            elif self.path == model_path:
                self._reply(200, {"name": served.name, "ready": True})
            else:
                self._reply(404, {"error": f"no such path {self.path}; the model is at {model_path}"})

        def do_POST(self) -> None:
            if self.path != f"{model_path}:predict":
                self._reply(404, {"error": f"no such path {self.path}; POST {model_path}:predict"})
                return
            try:
                instances, parameters = parse_request(self.headers.get("Content-Length"), self.rfile)
                self._reply(200, {"predictions": served.predict(instances, parameters)})
            except BadRequest as exc:
                self._reply(400, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - one line to the client, the traceback to the log
                log.exception("predict failed")
                self._reply(500, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})

    return Handler


def parse_request(length: str | None, stream: Any) -> tuple[list, dict]:
    """(instances, parameters) of a v1 predict request."""
    try:
        size = int(length or "0")
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    if not 0 < size <= MAX_BODY_BYTES:
        raise BadRequest(f"the request body must be 1 byte to {MAX_BODY_BYTES} bytes of JSON")
    try:
        body = json.loads(stream.read(size))
    except ValueError as exc:
        raise BadRequest(f"the request body is not JSON: {exc}") from None
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not 0 < len(instances) <= MAX_INSTANCES:
        raise BadRequest(f'the body needs "instances": a list of 1 to {MAX_INSTANCES} inputs')
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be an object')
    return instances, parameters


def serve(served: Served, host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), make_handler(served))
    log.info("serving %s (%s) on http://%s:%d/v1/models/%s", served.name, served.task_type, host, port, served.name)
    try:
        server.serve_forever()
    finally:
        server.server_close()
