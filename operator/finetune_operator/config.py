"""Operator settings: each a field of ``OperatorConfig`` whose metadata makes it a CLI flag with an
environment-variable default (``FINETUNE_OPERATOR_<FLAG_IN_UPPER_SNAKE_CASE>``). The parser, the
environment names and docs/operator.md's table (``make docs``) are all derived from the fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

DEFAULT_TRAINER_IMAGE = "ghcr.io/finetune-operator/trainer:0.2.0-dev"
DEFAULT_GPU_TOLERATIONS: tuple[dict[str, Any], ...] = (
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
)
ENV_PREFIX = "FINETUNE_OPERATOR_"


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field is set from outside."""

    flag: str
    """The long option, e.g. ``--trainer-image``."""
    help: str
    short: str | None = None
    env: str | None = None
    """The variable after ENV_PREFIX; by default the flag in upper snake case."""
    fallback_env: tuple[str, ...] = ()
    """Variables read (without prefix) when neither the flag nor the prefixed variable is set."""
    from_env: bool = True
    """False: a flag only."""
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    default_doc: str | None = None
    """The default as the docs say it, where the field's own default is not the whole story."""

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + (self.env or self.flag.removeprefix("--").upper().replace("-", "_"))

    @property
    def env_names(self) -> tuple[str, ...]:
        """The variables read for this setting, in order."""
        return ((self.env_name,) if self.from_env else ()) + self.fallback_env


def setting(default: Any, /, name: str, help: str, **kw: Any) -> Any:
    """A dataclass field with its Flag ``name``."""
    return dataclasses.field(default=default, metadata={"flag": Flag(name, help, **kw)})


def _tolerations(text: str) -> tuple[dict[str, Any], ...]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise argparse.ArgumentTypeError("must be a JSON list of objects")
    return tuple(value)


def _env_bool(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator is configured with. Immutable; built once by ``from_args``."""

    namespaces: tuple[str, ...] = setting(
        (),
        "--namespace",
        "watch this namespace (repeatable; the variable takes a comma-separated list)",
        short="-n",
        env="NAMESPACES",
        metavar="NS",
        default_doc="all namespaces",
    )
    all_namespaces: bool = setting(
        False,
        "--all-namespaces",
        "watch every namespace (the default when no namespace is named)",
        short="-A",
        from_env=False,
    )
    kubeconfig: str | None = setting(
        None,
        "--kubeconfig",
        "kubeconfig file",
        fallback_env=("KUBECONFIG",),
        default_doc="in-cluster ServiceAccount, then kubeconfig",
    )
    trainer_image: str = setting(DEFAULT_TRAINER_IMAGE, "--trainer-image", "trainer image of runs that name none")
    image_pull_policy: str = setting(
        "IfNotPresent",
        "--image-pull-policy",
        "imagePullPolicy of the trainer pods",
        choices=("Always", "IfNotPresent", "Never"),
    )
    gpu_tolerations: tuple[dict[str, Any], ...] = setting(
        DEFAULT_GPU_TOLERATIONS,
        "--gpu-tolerations",
        "JSON list of tolerations added to every pod that requests GPUs (GPU nodes are usually tainted)",
        metavar="JSON",
    )
    metrics_port: int = setting(8080, "--metrics-port", "Prometheus /metrics; 0 disables")
    health_port: int = setting(8081, "--health-port", "/healthz (liveness) and /readyz (readiness); 0 disables")
    leader_election: bool = setting(True, "--leader-election", "Lease-based leader election (off: a single replica)")
    lease_name: str = setting("finetune-operator", "--lease-name", "the Lease's name")
    lease_namespace: str | None = setting(
        None,
        "--lease-namespace",
        "the Lease's namespace",
        fallback_env=("POD_NAMESPACE",),
        default_doc="the pod's namespace, else the first watched one",
    )
    lease_duration_seconds: float = setting(15.0, "--lease-duration", "seconds a Lease record stays valid unrenewed")
    lease_renew_seconds: float = setting(5.0, "--lease-renew-interval", "seconds between the leader's renewals")
    identity: str = setting("", "--identity", "holder identity in the Lease", default_doc="`$HOSTNAME-<pid>`")
    status_patch: bool = setting(
        True,
        "--status-patch",
        "let each trainer report live progress, its memory plan and the serving facts into its FineTuneJob's "
        "status.progress, status.plan and status.serving (every trainer has its own "
        "ServiceAccount either way: it reads its FineTuneJob with it to check its config)",
    )
    trainer_cluster_role: str = setting(
        "finetune-operator-trainer",
        "--trainer-cluster-role",
        "ClusterRole bound to each trainer's ServiceAccount in its namespace (patch on finetunejobs/status only; "
        "the chart creates it and passes its own name)",
    )
    status_patch_interval_seconds: float = setting(
        10.0, "--status-patch-interval", "least seconds between a trainer's progress patches"
    )
    image_pull_grace_seconds: float = setting(
        300.0, "--image-pull-grace", "seconds an image pull may keep failing (Stalled) before the run is Failed"
    )
    status_min_interval_seconds: float = setting(
        0.5,
        "--status-min-interval",
        "least seconds between two status writes of one FineTuneJob (bounds the API write rate)",
    )
    model_cache_claim: str | None = setting(
        None,
        "--model-cache-claim",
        "the model cache: a PersistentVolumeClaim of this name in each FineTuneJob's namespace (the admin's), into "
        "which fetch Jobs download hf:// and s3:// models once and trainers mount read-only",
        default_doc="none: models are fetched onto each run's output claim",
    )
    hub_endpoint: str | None = setting(
        None,
        "--hub-endpoint",
        "HF_ENDPOINT of the fetch containers; the chart pins the same value in its policy",
        default_doc="huggingface.co",
    )
    ca_bundle: str | None = setting(
        None,
        "--ca-bundle",
        "<ConfigMap>/<key> of extra CAs (PEM) the fetch containers trust (FINETUNE_CA_BUNDLE); the ConfigMap must "
        "exist in each FineTuneJob's namespace",
        metavar="CONFIGMAP/KEY",
        default_doc="none",
    )
    log_format: str = setting("json", "--log-format", "one JSON object per line, or text", choices=("json", "text"))
    log_level: str = setting("INFO", "--log-level", "DEBUG, INFO, WARNING or ERROR")

    @property
    def clusterwide(self) -> bool:
        return self.all_namespaces or not self.namespaces


def flags() -> Iterator[tuple[dataclasses.Field[Any], Flag, Any]]:
    """(field, its Flag, its Python type) of every setting, in declaration order."""
    hints = typing.get_type_hints(OperatorConfig)
    for field in dataclasses.fields(OperatorConfig):
        yield field, field.metadata["flag"], hints[field.name]


def env_names() -> set[str]:
    """Every environment variable the operator reads for its settings."""
    return {name for _, spec, _ in flags() for name in spec.env_names}


def _converter(kind: Any) -> Callable[[str], Any]:
    if kind in (int, float):
        return kind  # type: ignore[no-any-return]
    if kind == tuple[dict[str, Any], ...]:
        return _tolerations
    return str


def _env_default(field: dataclasses.Field[Any], spec: Flag, kind: Any, environ: Mapping[str, str]) -> Any:
    """The setting's default from the environment (a string argparse converts as if it were given
    on the command line, so a bad value is reported like a bad flag), else the field's default."""
    raw = next((environ[name] for name in spec.env_names if environ.get(name)), None)
    if raw is None:
        return field.default
    if kind is bool:
        return _env_bool(raw)
    if kind == tuple[str, ...]:
        return tuple(n.strip() for n in raw.split(",") if n.strip())
    return raw


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    p = argparse.ArgumentParser(
        prog="finetune-operator",
        description="Runs FineTuneJobs (finetune.dev/v1alpha1) as batch/v1 Jobs. "
        f"Every flag has an environment default: {ENV_PREFIX}<FLAG_IN_UPPER_SNAKE_CASE>.",
    )
    scope = p.add_mutually_exclusive_group()
    for field, spec, kind in flags():
        names = [spec.flag, *([spec.short] if spec.short else [])]
        group = scope if field.name in ("namespaces", "all_namespaces") else p
        env = f" (env {', '.join(spec.env_names)})" if spec.env_names else ""
        kw: dict[str, Any] = {"dest": field.name, "help": spec.help + env}
        if field.name == "namespaces":  # from the environment only when neither scope flag is given
            group.add_argument(*names, action="append", default=None, metavar=spec.metavar, **kw)
        elif field.name == "all_namespaces":
            group.add_argument(*names, action="store_true", default=None, **kw)
        elif kind is bool:
            default = _env_default(field, spec, kind, environ)
            group.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, **kw)
        else:
            default = _env_default(field, spec, kind, environ)
            group.add_argument(
                *names,
                type=_converter(kind),
                default=default,
                choices=spec.choices,
                metavar=spec.metavar
                or (None if spec.choices else spec.flag.removeprefix("--").upper().replace("-", "_")),
                **kw,
            )
    return p


def from_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorConfig:
    environ = os.environ if environ is None else environ
    args = vars(build_parser(environ).parse_args(argv))
    namespaces = tuple(args["namespaces"] or ())
    if not namespaces and not args["all_namespaces"]:
        namespaces = next(_env_default(*f, environ) for f in flags() if f[0].name == "namespaces")
    args["namespaces"] = namespaces
    args["all_namespaces"] = not namespaces
    args["lease_namespace"] = args["lease_namespace"] or (namespaces[0] if namespaces else None)
    args["identity"] = args["identity"] or f"{environ.get('HOSTNAME') or os.uname().nodename}-{os.getpid()}"
    args["log_level"] = args["log_level"].upper()
    if args["ca_bundle"] and args["ca_bundle"].count("/") != 1:
        raise SystemExit("--ca-bundle must be <ConfigMap name>/<key>")
    return OperatorConfig(**args)
