"""crowdlens.llm_labels: SFT and DPO data, and a tiny SFT → DPO run that learns and caches."""

from __future__ import annotations

import numpy as np
import pytest

from crowdlens.participation import llm_labels as L


def test_sft_and_preference_data():
    texts, labels = ["Join us!", "Soup."], ["Call-to-action", "None"]
    sft = L.sft_dataset(texts, labels)
    assert sft[0]["prompt"].startswith("Comment: Join us!") and sft[0]["completion"] == " call-to-action"
    pairs = L.preference_dataset(texts * 50, labels * 50, neighbour_share=0.5, seed=0)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    neighbour = np.mean([p["rejected"] == " problem-solution" for p in pairs if p["chosen"] == " call-to-action"])
    assert 0.4 < neighbour < 0.8  # the ladder neighbour half the time, plus its share of the random half


@pytest.mark.slow
def test_sft_then_dpo_learn_and_are_cached(isolated_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["Join the strike on Monday!", "I baked bread.", "Sign the petition today!", "The bus was late."] * 2
    labels = ["Call-to-action", "None", "Call-to-action", "None"] * 2
    sft = L.sft(texts, labels, epochs=2, batch_size=4, learning_rate=2e-3, lora_rank=4, progress=False)
    printed = capsys.readouterr()
    assert "'loss'" not in printed.out and "examples/s" not in printed.err  # quiet without progress
    losses = [h["loss"] for h in L.training_history(sft)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    def p_correct(model):  # mean probability the scorer gives the right label
        scorer = L.LMLabelScorer(model)
        p = scorer.predict_proba(texts)
        return np.mean([p[i, list(scorer.classes_).index(label)] for i, label in enumerate(labels)])

    assert p_correct(sft) > p_correct("smollm2")
    assert L.sft(texts, labels, epochs=2, batch_size=4, learning_rate=2e-3, lora_rank=4, progress=False) == sft
    dpo = L.dpo(texts, labels, sft, epochs=1, batch_size=4, learning_rate=5e-4, lora_rank=4, progress=False)
    assert dpo != sft and (dpo / "config.json").is_file() and len(L.training_history(dpo)) == 2
    p = L.LMLabelScorer(dpo).predict_proba(texts[:2])
    assert p.shape == (2, 5) and np.allclose(p.sum(1), 1)


# --- the LLM annotator --------------------------------------------------------------------

@pytest.mark.slow
def test_llm_annotator_returns_a_valid_label_per_text(isolated_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    annotator = L.LLMAnnotator("smollm2")
    result = annotator.annotate(["Join the strike on Monday!", "I made pasta."], progress=False)
    assert list(result["label"].isin(L.FIVE_CLASSES)) == [True, True]
    assert (result["seconds"] > 0).all() and {f"score_{l}" for l in L.FIVE_CLASSES} <= set(result.columns)
    # scores are calibrated: a content-free comment scores zero for every label
    assert np.allclose(annotator.scores("N/A") - annotator.baseline_, 0.0, atol=1e-4)


def test_qlora_adapters_are_merged_into_a_half_precision_base(tiny_causal_lm, tmp_path, monkeypatch):
    # the 4-bit path's last step, without a GPU: adapters saved, merged into the base in bf16
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(L, "mixed_precision", lambda device: torch.bfloat16)
    base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    tuned = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for name, parameter in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)  # B starts at zero: make the adapters change something
    trainer = type("Trainer", (), {"model": tuned})()
    merged = L._merge_into_half_precision(trainer, tiny_causal_lm, "cuda", tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    assert not any("lora" in name for name, _ in merged.named_parameters())
    reference = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    changed = merged.model.layers[0].self_attn.q_proj.weight.float()
    original = reference.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(changed, original, atol=1e-2)  # the adapters were merged in
    assert torch.allclose(merged.model.layers[0].self_attn.k_proj.weight.float(),
                          reference.model.layers[0].self_attn.k_proj.weight, atol=1e-2)  # the rest is the base


def test_label_scores_from_the_cached_prompt_equal_scoring_each_full_sequence(tiny_causal_lm):
    """The scorer runs each prompt once and the five labels on its cache: the same mean
    token log-probabilities as running prompt + label from scratch, label by label."""
    import torch

    scorer = L.LMLabelScorer(tiny_causal_lm, device="cpu").fit()
    texts = ["join the strike on monday", "nice soup"]
    scores = scorer.scores(texts)
    for i, text in enumerate(texts):
        prompt = scorer.tokenizer_(L.label_prompt(text), add_special_tokens=False)["input_ids"]
        for j, label in enumerate(scorer.label_ids_):
            with torch.inference_mode():
                logp = torch.log_softmax(scorer.lm_(input_ids=torch.tensor([prompt + label])).logits[0], dim=-1)
            expected = np.mean([logp[len(prompt) - 1 + k, token].item() for k, token in enumerate(label)])
            assert scores[i, j] == pytest.approx(expected, abs=1e-5)
    assert len({len(ids) for ids in scorer.label_ids_}) > 1  # labels of unequal length: the padding is exercised
