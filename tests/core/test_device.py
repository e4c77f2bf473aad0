"""crowdlens.core.device: which device runs the models, its precision and its name; the
4-bit option refused where it cannot run; a tiny model trained and run on each device."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from conftest import DEVICES
from crowdlens.core import device as D
from crowdlens.core import hub


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the given accelerators (CUDA GPUs, MPS)."""
    def set_up(cuda: int = 0, mps: bool = False, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    return set_up


@pytest.mark.parametrize("cuda, mps, expected", [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"),
                                                  (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert D.resolve_device("auto") == expected
    assert D.resolve_device() == expected


def test_explicit_names_are_checked_against_the_machine(machine):
    machine(cuda=2)
    assert D.resolve_device("cuda") == "cuda" and D.resolve_device("cuda:1") == "cuda:1"
    assert D.resolve_device(" CPU ") == "cpu"
    with pytest.raises(D.DeviceNotAvailableError, match=r"2 CUDA GPU\(s\): cuda:0, cuda:1"):
        D.resolve_device("cuda:2")
    with pytest.raises(D.DeviceNotAvailableError, match="no Apple Metal"):
        D.resolve_device("mps")
    machine(cuda=0)
    with pytest.raises(D.DeviceNotAvailableError, match="sees no CUDA GPU") as err:
        D.resolve_device("cuda")
    assert "device='auto' or 'cpu'" in str(err.value)


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "tpu", "", "cpu:0"])
def test_a_bad_name_lists_the_choices(name):
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, cuda:N, mps"):
        D.resolve_device(name)
    with pytest.raises(ValueError, match="unknown device"):
        D.check_device_name(name)


def test_mixed_precision_is_bf16_on_ampere_fp16_on_older_gpus_and_mps_none_on_the_cpu(machine):
    machine(cuda=1, bf16=True)
    assert D.mixed_precision("cuda") is torch.bfloat16 and D.mixed_precision("cuda:0") is torch.bfloat16
    machine(cuda=1, bf16=False)
    assert D.mixed_precision("cuda") is torch.float16
    assert D.mixed_precision("mps") is torch.float16
    assert D.mixed_precision("cpu") is None


def test_on_the_cpu_nothing_changes_precision_or_moves():
    with D.autocast("cpu"):
        assert not torch.is_autocast_enabled()
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert D.grad_scaler("cpu") is None
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long)}
    assert D.to_device(batch, "cpu") is batch  # the very same tensors: no copy, no pinning
    assert D.device_type("cuda:1") == "cuda" and D.is_accelerator("mps") and not D.is_accelerator("cpu")


def test_adamw_is_fused_on_the_cpu_and_cuda_and_steps_like_the_plain_loop():
    assert D.adamw([torch.zeros(1, requires_grad=True)], "cpu", lr=0.1).defaults["fused"]
    assert D.adamw([torch.zeros(1, requires_grad=True)], "cuda:1", lr=0.1).defaults["fused"]
    assert not D.adamw([torch.zeros(1, requires_grad=True)], "mps", lr=0.1).defaults["fused"]
    torch.manual_seed(0)
    start = torch.randn(64, 8)
    results = []
    for fused in (True, False):
        weight = start.clone().requires_grad_()
        optimiser = (D.adamw([weight], "cpu", lr=0.01) if fused
                     else torch.optim.AdamW([weight], lr=0.01, weight_decay=0.01))
        for _ in range(20):
            loss = (weight ** 2).sum()
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
        results.append(weight.detach())
    assert torch.allclose(*results, atol=1e-6) and (results[0] ** 2).sum() < (start ** 2).sum()


def test_the_cpu_is_described_by_its_model():
    assert D.device_description("cpu") == D.cpu_model() and D.cpu_model().strip()


def test_cuda_only_features_are_refused_elsewhere_with_the_fix():
    with pytest.raises(D.DeviceNotAvailableError) as err:
        D.cuda_only("load_in_4bit (4-bit weights)", "cpu")
    assert "needs a CUDA GPU" in str(err.value) and "pip install 'crowdlens[cuda]'" in str(err.value)


def test_four_bit_weights_need_cuda_and_say_how_to_get_it(tmp_path):
    with pytest.raises(D.DeviceNotAvailableError) as err:
        hub.four_bit_options("cpu")
    assert "CUDA GPU" in str(err.value) and "pip install 'crowdlens[cuda]'" in str(err.value)
    # refused before any weights load: the path does not even exist
    with pytest.raises(D.DeviceNotAvailableError, match=r"crowdlens\[cuda\]"):
        hub.load_causal_lm(str(tmp_path / "no-model"), "cpu", load_in_4bit=True)


def test_four_bit_refusals_in_sft_dpo_and_the_reply_model(isolated_cache):
    import pandas as pd

    from crowdlens.crowd_response.replies import ReplyModel
    from crowdlens.participation import llm_labels

    with pytest.raises(D.DeviceNotAvailableError, match=r"crowdlens\[cuda\]"):
        llm_labels.sft(["Join us!"], ["Call-to-action"], device="cpu", load_in_4bit=True)
    with pytest.raises(D.DeviceNotAvailableError, match=r"crowdlens\[cuda\]"):
        llm_labels.dpo(["Join us!"], ["Call-to-action"], "smollm2", device="cpu", load_in_4bit=True)
    examples = pd.DataFrame({"post_text": ["a"], "history": [[]], "reply": ["b"]})
    with pytest.raises(D.DeviceNotAvailableError, match=r"crowdlens\[cuda\]"):
        ReplyModel(device="cpu", load_in_4bit=True).fit(examples)


def test_trainer_settings_on_the_cpu_are_float32_without_autocast_or_checkpointing():
    from crowdlens.participation.llm_labels import _trainer_device_options

    # an earlier commit fixed these: trl's bf16 default is emulated ~10-100x slower on CPUs
    assert _trainer_device_options("cpu") == dict(use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False)


def test_trainer_settings_on_a_gpu_follow_its_precision(machine):
    from crowdlens.participation.llm_labels import _trainer_device_options

    machine(cuda=2, bf16=True)
    assert _trainer_device_options("cuda") == dict(use_cpu=False, bf16=True, fp16=False, gradient_checkpointing=True)
    machine(cuda=2, bf16=False)
    assert _trainer_device_options("cuda:0")["fp16"] is True
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=1"):
        _trainer_device_options("cuda:1")


# A tiny model, trained and run on each device this machine has ----------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_an_encoder_trains_a_step_and_scores_on_the_device(tiny_encoder, device):
    from crowdlens.core.encoders import EncoderClassifier

    texts, labels = ["join the strike", "sign the petition", "nice soup", "my cat sleeps"], ["a", "a", "b", "b"]
    model = EncoderClassifier(tiny_encoder, max_length=8, epochs=1, batch_size=4, validation_share=0.0,
                              progress=False, device=device).fit(texts, labels)
    assert len(model.history_) == 1 and np.isfinite(model.history_[0]["train_loss"])
    assert model.device_ == device and model.trained_on_ == device
    assert all(p.device.type == device for p in model.model_.parameters())
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (4, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_a_causal_lm_trains_and_generates_on_the_device(tiny_causal_lm, device):
    import pandas as pd

    from crowdlens.crowd_response.replies import ReplyModel

    examples = pd.DataFrame({"post_text": ["it rains today", "stocks fell"] * 2, "history": [["me too"]] * 4,
                             "reply": ["me too"] * 4})
    for adapter in ("lora", "mixture"):
        model = ReplyModel(tiny_causal_lm, adapter=adapter, steps=2, batch_size=2, rank=2, max_length=32,
                           progress=False, device=device).fit(examples)
        trained = [p for p in model.model_.parameters() if p.requires_grad]
        assert trained and all(p.device.type == device for p in model.model_.parameters())
        assert all(p.dtype is torch.float32 for p in trained)  # adapters train in float32 everywhere
        assert len(model.losses_) == 2 and np.isfinite(model.losses_).all()
        replies = model.generate(examples.head(2), max_new_tokens=3, batch_size=2)
        assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
        scores = model.reply_logprob(examples.head(1), [["me too", "no"]])
        assert scores[0].shape == (2,) and np.isfinite(scores[0]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_lm_scoring_and_features_run_on_the_device(tiny_causal_lm, device):
    from crowdlens.crowd_response.distributions import lm_features
    from crowdlens.participation.llm_labels import LLMAnnotator, LMLabelScorer

    annotator = LLMAnnotator(tiny_causal_lm, device=device).fit()
    assert next(annotator.lm_.parameters()).device.type == device
    table = annotator.annotate(["join the strike", "nice soup"], progress=False)
    assert len(table) == 2 and table["label"].isin(annotator.labels_).all()
    scorer = LMLabelScorer(tiny_causal_lm, device=device).fit()
    assert next(scorer.lm_.parameters()).device.type == device
    p = scorer.predict_proba(["join the strike", "nice soup", "sign it"])
    assert p.shape == (3, 5) and np.allclose(p.sum(1), 1)
    features = lm_features(["join the strike", "nice soup"], tiny_causal_lm, max_length=8, device=device)
    assert features.shape == (2, 32) and features.dtype == np.float32 and np.isfinite(features).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: PyTorch sees none on this machine")
def test_on_cuda_lms_load_in_half_precision_and_batches_are_pinned(tiny_causal_lm):
    _, lm = hub.load_causal_lm(tiny_causal_lm, "cuda")
    assert next(lm.parameters()).dtype is D.mixed_precision("cuda") and next(lm.parameters()).is_cuda
    moved = D.to_device({"ids": torch.ones(2, 3, dtype=torch.long)}, "cuda")
    assert moved["ids"].is_cuda
    with D.autocast("cuda"):
        assert torch.is_autocast_enabled("cuda")
    assert "GiB" in D.device_description("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: PyTorch sees none on this machine")
def test_on_cuda_four_bit_weights_load_with_bitsandbytes(tiny_causal_lm):
    pytest.importorskip("bitsandbytes", reason="needs the cuda extra: pip install 'crowdlens[cuda]'")
    options = hub.four_bit_options("cuda")
    assert options["quantization_config"].load_in_4bit and options["device_map"] == {"": 0}
    _, lm = hub.load_causal_lm(tiny_causal_lm, "cuda", load_in_4bit=True)
    assert getattr(lm, "is_loaded_in_4bit", False)
