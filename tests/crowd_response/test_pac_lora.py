"""crowdlens.crowd_response.pac_lora: SocialAlign's PAC-LoRA layer. The gates sum to one;
one expert is plain LoRA (peft's); the analyze gate moves when only the post changes and
the compose gate when only the user's history changes; a reply model trains, writes and
scores with it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from crowdlens.crowd_response.pac_lora import PACLoRALinear, PACSpans, apply_pac_lora, pac_layers, token_spans


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 12)

    def forward(self, x):
        return self.proj(x)


def spans(length=7):
    post = torch.zeros(2, length, dtype=torch.bool)
    user = torch.zeros(2, length, dtype=torch.bool)
    post[:, 1:3], user[:, 3:6] = True, True
    return PACSpans(post, user)


def kept_gates(model, x, where):
    layer = pac_layers(model)[0]
    layer.kept = []
    with token_spans(model, where), torch.no_grad():
        out = model(x)
    analyze, compose, post, user = layer.kept[0]
    layer.kept = None
    return out, analyze, compose


def test_gates_sum_to_one_and_are_uniform_outside_their_span():
    torch.manual_seed(0)
    model = apply_pac_lora(Block(), ["proj"], n_experts=3, rank=4)
    _, analyze, compose = kept_gates(model, torch.randn(2, 7, 16), spans())
    assert torch.allclose(analyze.sum(-1), torch.ones(2, 7)) and torch.allclose(compose.sum(-1), torch.ones(2, 7))
    outside_post, outside_user = [0, 3, 4, 5, 6], [0, 1, 2, 6]
    assert torch.allclose(analyze[:, outside_post], torch.full((2, 5, 3), 1 / 3))  # zero input, no bias
    assert torch.allclose(compose[:, outside_user], torch.full((2, 4, 3), 1 / 3))
    assert not torch.allclose(analyze[:, 1:3], torch.full((2, 2, 3), 1 / 3))  # the post's own tokens
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"proj.lora_A", "proj.lora_B", "proj.analyze_gate.0.weight", "proj.analyze_gate.2.weight",
                         "proj.compose_gate.0.weight", "proj.compose_gate.2.weight"}
    assert model.proj.analyze_gate[0].out_features == 32  # SocialAlign's gate width


def test_one_expert_is_plain_lora():
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    pac = apply_pac_lora(Block(), ["proj"], n_experts=1, rank=4, alpha=8)
    torch.nn.init.normal_(pac.proj.lora_B)  # B starts at zero: give it weights so that LoRA does something
    plain = Block()
    plain.proj.load_state_dict(pac.proj.base.state_dict())
    plain = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["proj"]), plain)
    plain.proj.lora_A["default"].weight.data = pac.proj.lora_A.data[0].clone()
    plain.proj.lora_B["default"].weight.data = pac.proj.lora_B.data[0].clone()
    x = torch.randn(2, 7, 16)
    out, _, _ = kept_gates(pac, x, spans())
    with torch.no_grad():
        assert torch.allclose(out, plain(x), atol=1e-5)
        assert not torch.allclose(out, pac.proj.base(x), atol=1e-3)


def test_the_analyze_gate_follows_the_post_and_the_compose_gate_the_user():
    torch.manual_seed(0)
    model = apply_pac_lora(Block(), ["proj"], n_experts=3, rank=4)
    x = torch.randn(2, 7, 16)
    other_post, other_user = x.clone(), x.clone()
    other_post[:, 1:3] = torch.randn(2, 2, 16)  # only the post's tokens change
    other_user[:, 3:6] = torch.randn(2, 3, 16)  # only the history's tokens change
    _, analyze, compose = kept_gates(model, x, spans())
    _, analyze_p, compose_p = kept_gates(model, other_post, spans())
    _, analyze_u, compose_u = kept_gates(model, other_user, spans())
    assert not torch.allclose(analyze_p, analyze) and torch.allclose(compose_p, compose)
    assert not torch.allclose(compose_u, compose) and torch.allclose(analyze_u, analyze)


def test_the_layer_computes_the_mixture_of_experts_formula_inside_and_after_the_spans():
    torch.manual_seed(0)
    model = apply_pac_lora(Block(), ["proj"], n_experts=3, rank=4, alpha=8)
    layer = model.proj
    torch.nn.init.normal_(layer.lora_B)
    prompt, generated = torch.randn(2, 7, 16), torch.randn(2, 1, 16)

    def by_the_formula(x, post, user):  # y = W x + (α/r) Σ_e g_B,e B_e (Σ_e' g_A,e' A_e' x), expert by expert
        analyze, compose = layer.gates(x, post, user)
        h = sum(analyze[..., e, None] * (x @ layer.lora_A[e].T) for e in range(3))
        return layer.base(x) + 2.0 * sum(compose[..., e, None] * (h @ layer.lora_B[e].T) for e in range(3))

    where = spans()
    with token_spans(model, where), torch.no_grad():
        assert torch.allclose(model(prompt), by_the_formula(prompt, where.post, where.user), atol=1e-5)
        # a token generated after the prompt lies outside both spans: uniform gates
        outside = torch.zeros(2, 1, dtype=torch.bool)
        assert torch.allclose(model(generated), by_the_formula(generated, outside, outside), atol=1e-5)
    with torch.no_grad():  # no spans told at all: the same uniform mixture
        assert torch.allclose(model(prompt), by_the_formula(prompt, *[torch.zeros(2, 7, dtype=torch.bool)] * 2),
                              atol=1e-5)


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="n_experts"):
        PACLoRALinear(nn.Linear(4, 4), n_experts=0)
    with pytest.raises(ValueError, match="linear layers are named"):
        apply_pac_lora(Block(), ["q_proj"])


def examples(post="网友爆料称某地发生事故", history=("真的假的", "支持一下")):
    return pd.DataFrame({"post_text": [post], "history": [list(history)], "reply": ["希望是假的"]})


def test_a_pac_reply_model_trains_writes_scores_and_reads_the_spans(tiny_causal_lm):
    from crowdlens.crowd_response.replies import ReplyModel

    train = pd.concat([examples(), examples("官方辟谣：没有发生事故", ("谢谢", "好的"))] * 4, ignore_index=True)
    model = ReplyModel(tiny_causal_lm, adapter="pac", steps=6, batch_size=4, learning_rate=1e-2, n_experts=3,
                       target_modules=["q_proj", "v_proj", "down_proj"], progress=False, device="cpu").fit(train)
    assert len(model.losses_) == 6 and model.losses_[-1] < model.losses_[0]
    assert len(pac_layers(model.model_)) == 2 * 3  # three projections in each of the two blocks
    ids, post, user = model._prompt_ids(train.iloc[0])
    assert sum(post) > 0 and sum(user) > 0 and not any(p and u for p, u in zip(post, user))
    assert post.index(True) == 0 and user.index(True) == sum(post)  # the post, then the history
    replies = model.generate(train.head(3), max_new_tokens=5)
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    scores = model.reply_logprob(train.head(2), [["希望是假的", "谢谢"], ["好的"]])
    assert [len(s) for s in scores] == [2, 1] and all(np.isfinite(s).all() for s in scores)
    # the first adapted projection reads token embeddings only: its analyze gate moves with
    # the post alone, its compose gate with the history alone
    first = lambda frame: model.mean_gates(frame).query("layer == 0").set_index("expert")  # noqa: E731
    base, new_post, new_history = first(examples()), first(examples(post="今天天气很好")), first(
        examples(history=("哈哈", "太好了")))
    assert not np.allclose(new_post["analyze"], base["analyze"]) and np.allclose(new_post["compose"], base["compose"])
    assert not np.allclose(new_history["compose"], base["compose"]) and np.allclose(new_history["analyze"],
                                                                                    base["analyze"])
    assert np.allclose(base[["analyze", "compose"]].sum(), 1)
    gates = model.mean_gates(examples())
    assert list(gates.columns) == ["layer", "block", "projection", "expert", "analyze", "compose"]
    assert sorted(set(gates["block"])) == [0, 1] and set(gates["projection"]) == {"q_proj", "v_proj", "down_proj"}
