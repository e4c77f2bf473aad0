"""crowdlens.mixture_lora: gates are distributions; one expert is plain (peft) LoRA;
only the adapters train."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from crowdlens.crowd_response.mixture_lora import MixtureLoRALinear, apply_mixture_lora, mixture_layers, trainable_parameters


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(12, 10)
        self.v_proj = nn.Linear(12, 10)
        self.out = nn.Linear(10, 4)

    def forward(self, x):
        return self.out(self.q_proj(x) + self.v_proj(x))


def test_gates_sum_to_one_per_token_and_temperature_sharpens():
    torch.manual_seed(0)
    layer = MixtureLoRALinear(nn.Linear(12, 10), n_experts=3, rank=4, temperature=1.0)
    x = torch.randn(2, 5, 12)
    analyze, compose = layer.gates(x)
    assert analyze.shape == compose.shape == (2, 5, 3)
    assert torch.allclose(analyze.sum(-1), torch.ones(2, 5)) and torch.allclose(compose.sum(-1), torch.ones(2, 5))
    assert not torch.allclose(analyze[0, 0], analyze[0, 1])  # per token, from the input
    layer.temperature = 0.05
    sharp, _ = layer.gates(x)
    assert sharp.max(-1).values.mean() > analyze.max(-1).values.mean()


def test_new_layer_equals_its_base_and_one_expert_equals_peft_lora():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(3, 12)
    reference = model(x)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    lora = peft_model.base_model.model.q_proj
    nn.init.normal_(lora.lora_B["default"].weight)  # a trained-looking adapter
    ours = apply_mixture_lora(copy.deepcopy(model), ["q_proj"], n_experts=1, rank=4, alpha=8)
    assert torch.allclose(ours(x), reference, atol=1e-6)  # B = 0 at start: the base model
    ours.q_proj.lora_A.data[0] = lora.lora_A["default"].weight.data
    ours.q_proj.lora_B.data[0] = lora.lora_B["default"].weight.data
    assert torch.allclose(ours(x), peft_model(x), atol=1e-5)
    assert not torch.allclose(ours(x), reference, atol=1e-3)


def test_only_adapters_and_gates_train():
    torch.manual_seed(0)
    model = apply_mixture_lora(Tiny(), ["q_proj", "v_proj"], n_experts=3, rank=2)
    assert len(mixture_layers(model)) == 2
    trainable, total = trainable_parameters(model)
    per_layer = 3 * 2 * 12 + 3 * 10 * 2 + 2 * (12 * 3 + 3)
    assert trainable == 2 * per_layer and total > trainable
    base_before = model.out.weight.clone()
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(16, 12), torch.randint(0, 4, (16,))
    for _ in range(3):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    assert torch.equal(model.out.weight, base_before)
    assert model.q_proj.lora_B.abs().sum() > 0 and model.q_proj.analyze_gate.weight.grad is not None


def test_clear_errors():
    with pytest.raises(ValueError, match="linear layers are named"):
        apply_mixture_lora(Tiny(), ["k_proj"])
    with pytest.raises(ValueError, match="temperature"):
        MixtureLoRALinear(nn.Linear(2, 2), temperature=0)


@pytest.mark.slow
def test_mixture_on_the_offline_causal_lm_starts_as_the_base_model(monkeypatch):
    from crowdlens.core import hub as models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer, model = models.load_causal_lm("smollm2")
    inputs = tokenizer("转发微博", return_tensors="pt")
    with torch.inference_mode():
        before = model(**inputs).logits
    apply_mixture_lora(model, ["q_proj", "v_proj"], n_experts=3, rank=4)
    assert len(mixture_layers(model)) == 2 * model.config.num_hidden_layers
    with torch.inference_mode():
        after = model(**inputs).logits
    assert torch.allclose(before, after, atol=1e-4)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < 0.05 * total
