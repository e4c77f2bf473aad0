"""crowdlens.encoders: fine-tuning learns a separable task, predictions keep input order,
save/load round-trips, and a killed run resumes from its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from crowdlens.core.encoders import EncoderClassifier, OnnxEncoderClassifier, length_sorted_batches

ACTION = ["Join the protest on Saturday", "Sign the petition and strike with us", "We marched to city hall",
          "Boycott them and organise your workplace", "I will volunteer at the union rally",
          "Come to the demonstration tomorrow", "Donate to the strike fund now", "We occupied the square"]
OTHER = ["I baked bread this morning", "The cat sleeps on the sofa", "My favourite colour is green",
         "The train was late again", "This pasta recipe is great", "I watched a film last night",
         "The weather is mild today", "My phone battery died"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def data(repeat=3):
    texts = (ACTION + OTHER) * repeat
    labels = (["action"] * len(ACTION) + ["other"] * len(OTHER)) * repeat
    return texts, labels


@pytest.mark.slow
def test_fit_learns_a_separable_task_and_round_trips(tmp_path):
    texts, labels = data()
    model = EncoderClassifier(max_length=24, epochs=3, learning_rate=1e-4, batch_size=8,
                              validation_share=0.0, progress=False).fit(texts, labels)
    held_out = ["Everyone should join the picket line", "I had soup for lunch"]
    assert list(model.predict(held_out)) == ["action", "other"]
    probabilities = model.predict_proba(held_out + held_out[::-1])
    assert np.allclose(probabilities.sum(1), 1) and np.allclose(probabilities[0], probabilities[3], atol=1e-5)
    saved = model.save(tmp_path / "clf", card={"task": "toy"})
    loaded = EncoderClassifier.load(saved)
    assert loaded.card_["task"] == "toy" and loaded.labels_ == ["action", "other"]
    assert np.allclose(loaded.predict_proba(held_out), probabilities[:2], atol=1e-5)

    # the ONNX Runtime export: fp32 reproduces the torch probabilities; int8 keeps the labels
    exported = loaded.to_onnx(tmp_path / "onnx", quantize=False)
    assert exported.labels_ == loaded.labels_
    assert np.allclose(exported.predict_proba(held_out), probabilities[:2], atol=1e-4)
    # batches run concurrently on two cores still land on their own rows
    mixed = texts + held_out * 3
    one_core = OnnxEncoderClassifier(tmp_path / "onnx", threads=1).predict_proba(mixed, batch_size=2)
    two_cores = OnnxEncoderClassifier(tmp_path / "onnx", threads=2).predict_proba(mixed, batch_size=2)
    assert np.array_equal(one_core, two_cores)
    assert np.allclose(two_cores, loaded.predict_proba(mixed), atol=1e-4)
    int8 = OnnxEncoderClassifier.export(loaded, tmp_path / "onnx-int8", quantize=True)
    assert (tmp_path / "onnx-int8" / "model.onnx").stat().st_size < (tmp_path / "onnx" / "model.onnx").stat().st_size / 2
    assert list(int8.predict(held_out)) == ["action", "other"]
    assert OnnxEncoderClassifier(tmp_path / "onnx-int8").card_["onnx_quantized"] is True
    assert exported.card_["onnx_last_layer_first_token_only"] is True  # MiniLM is a BERT
    assert not list(tmp_path.glob(".onnx*"))  # no staging folder left behind
    with pytest.raises(FileNotFoundError, match="to_onnx"):
        OnnxEncoderClassifier(tmp_path)


def test_length_sorted_batches_pad_and_cover_every_row_once():
    encoded = [[5, 6, 7], [1], [2, 3], [4, 4, 4, 4], [9]]
    seen = []
    for idx, ids, mask in length_sorted_batches(encoded, batch_size=2, pad_id=0):
        assert ids.shape == mask.shape and ids.shape[1] == max(len(encoded[i]) for i in idx)
        for row, i in enumerate(idx):
            assert list(ids[row, : mask[row].sum()]) == encoded[i] and set(ids[row, mask[row].sum():]) <= {0}
        seen.extend(idx)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert [len(encoded[i]) for i in seen] == sorted(len(e) for e in encoded)  # short ones together


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    texts, labels = data(repeat=1)
    first = EncoderClassifier(max_length=16, epochs=1, batch_size=8, validation_share=0.25,
                              checkpoint_dir=tmp_path, progress=False).fit(texts, labels)
    assert (tmp_path / "checkpoint.pt").is_file() and len(first.history_) == 1
    resumed = EncoderClassifier(max_length=16, epochs=2, batch_size=8, validation_share=0.25, patience=5,
                                checkpoint_dir=tmp_path, progress=False).fit(texts, labels)
    assert [h["epoch"] for h in resumed.history_] == [1, 2]
    assert resumed.history_[0] == first.history_[0]  # epoch 1 was not run again


@pytest.mark.slow
def test_a_run_that_stopped_early_stays_finished_when_resumed(tmp_path):
    import torch

    texts, labels = data(repeat=1)
    settings = dict(max_length=16, batch_size=8, validation_share=0.25, checkpoint_dir=tmp_path, progress=False)
    EncoderClassifier(epochs=1, **settings).fit(texts, labels)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state["stale"] = 2  # as if epoch 1 had not improved twice: early stopping ended the run
    torch.save(state, tmp_path / "checkpoint.pt")
    resumed = EncoderClassifier(epochs=3, patience=1, **settings).fit(texts, labels)
    assert [h["epoch"] for h in resumed.history_] == [1]


@pytest.mark.slow
def test_lora_on_the_causal_lm_learns_a_chinese_task_and_round_trips(tmp_path):
    happy = ["今天太开心了", "好高兴啊哈哈", "真幸福，谢谢大家", "开心开心", "太棒了，好喜欢"]
    angry = ["气死我了", "太可恶了，愤怒", "简直无耻", "混蛋，滚", "这帮人太恶心了"]
    texts, labels = (happy + angry) * 4, (["happy"] * 5 + ["angry"] * 5) * 4
    model = EncoderClassifier("smollm2", max_length=16, epochs=4, learning_rate=2e-3, batch_size=8,
                              validation_share=0.0, lora_rank=4, progress=False).fit(texts, labels)
    assert (model.predict(texts) == np.array(labels)).mean() >= 0.9
    assert not hasattr(model.model_, "peft_config")  # adapters merged into a plain model
    loaded = EncoderClassifier.load(model.save(tmp_path / "lm"))
    assert np.allclose(loaded.predict_proba(happy[:2]), model.predict_proba(happy[:2]), atol=1e-4)


@pytest.mark.parametrize("architecture", ["bert", "roberta"])
def test_first_token_export_gives_the_full_models_logits(architecture):
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                              DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

    from crowdlens.core.encoders import _first_token_model

    torch.manual_seed(0)
    size = dict(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                num_labels=5, max_position_embeddings=40)
    model = (BertForSequenceClassification(BertConfig(**size)) if architecture == "bert"
             else RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **size))).eval()
    ids = torch.randint(3, 60, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padded rows: the first token must not attend to the padding
    mask[3, 2:] = 0
    ids[mask == 0] = model.config.pad_token_id or 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        got = _first_token_model(model)(ids, mask)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)
    # an architecture whose head it does not know is exported whole
    other = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4,
                                                                 hidden_dim=64, max_position_embeddings=40))
    assert _first_token_model(other) is None


class _Constant:
    """A stand-in classifier with fixed probabilities, to check the bookkeeping."""

    def __init__(self, first_column):
        self.first_column = first_column
        self.calls = 0

    def predict_proba(self, texts, batch_size=64):
        self.calls += 1
        p = np.full((len(texts), 2), 0.0)
        p[:, 0] = self.first_column
        p[:, 1] = 1 - self.first_column
        return p


def test_throughput_compares_each_backend_with_the_first():
    from crowdlens.core.encoders import throughput

    table = throughput({"ref": _Constant(0.9), "same": _Constant(0.8), "flipped": _Constant(0.2)}, ["a", "b", "c"])
    assert list(table["backend"]) == ["ref", "same", "flipped"]
    assert list(table["label_agreement"]) == [1.0, 1.0, 0.0]
    assert np.allclose(table["max_probability_difference"], [0.0, 0.1, 0.7])
    assert (table["comments_per_s"] > 0).all()
    assert "slowest_comments_per_s" not in table  # one run: no spread to report
    with pytest.raises(ValueError, match="at least one"):
        throughput({}, ["a"])
    # repeated runs: each classifier scores the texts `repeats` times (after its warm-up),
    # and the reported rate is the median, between the slowest and the fastest
    counted = {"ref": _Constant(0.9), "other": _Constant(0.1)}
    table = throughput(counted, ["a", "b"], repeats=3)
    assert [c.calls for c in counted.values()] == [4, 4]
    assert (table["slowest_comments_per_s"] <= table["comments_per_s"]).all()
    assert (table["comments_per_s"] <= table["fastest_comments_per_s"]).all()
    with pytest.raises(ValueError, match="repeats"):
        throughput(counted, ["a"], repeats=0)


@pytest.mark.slow
def test_distil_keeps_the_chosen_layers_and_learns_the_teachers_logits(tmp_path):
    texts, labels = data()
    teacher = EncoderClassifier(max_length=24, epochs=3, learning_rate=1e-4, batch_size=8,
                                validation_share=0.0, progress=False).fit(texts, labels)
    transfer = texts + ["Everyone should join the picket line", "I had soup for lunch", "March with us on Monday",
                        "The garden needs water", "Strike now, all of you", "My dog likes the park"]
    held_out = ["Walk out with the union tomorrow", "I read a novel on the train"]
    before = teacher.predict_proba(held_out)
    # the teacher's layers as they are, without training: the error distillation has to remove
    untrained = teacher.distil(transfer, layers=[0, 2, 4], epochs=0, progress=False)
    student = teacher.distil(transfer, layers=[0, 2, 4], epochs=6, learning_rate=2e-4, batch_size=8, progress=False)
    assert len(student.model_.bert.encoder.layer) == 3 and student.model_.config.num_hidden_layers == 3
    assert len(teacher.model_.bert.encoder.layer) == 6  # the teacher is left whole
    assert np.allclose(teacher.predict_proba(held_out), before)

    def gap(model):
        return np.abs(model._logits(transfer) - teacher._logits(transfer)).mean()

    assert gap(student) < gap(untrained) / 2
    assert list(student.predict(held_out)) == list(teacher.predict(held_out)) == ["action", "other"]
    assert student.history_[-1]["distil_epoch"] == 6
    loaded = EncoderClassifier.load(student.save(tmp_path / "student"))
    assert loaded.model_.config.num_hidden_layers == 3
    assert np.allclose(loaded.predict_proba(held_out), student.predict_proba(held_out), atol=1e-5)
    exported = loaded.to_onnx(tmp_path / "onnx", quantize=False)
    assert np.allclose(exported.predict_proba(held_out), student.predict_proba(held_out), atol=1e-4)
    for layers in ([], [4, 2], [0, 6]):
        with pytest.raises(ValueError, match="increasing indices"):
            teacher.distil(transfer, layers=layers)
    with pytest.raises(ValueError, match="transfer texts"):
        teacher.distil([], layers=[0])


def test_the_kept_model_scores_its_own_validation_rows(tiny_encoder):
    """What BBSE needs from an encoder with no refit: the rows it held out for early
    stopping, stratified by label, and the kept model's probabilities on them."""
    texts, labels = data(repeat=2)
    model = EncoderClassifier(tiny_encoder, max_length=12, epochs=2, batch_size=8, validation_share=0.25,
                              progress=False, device="cpu").fit(texts, labels)
    rows = model.validation_rows_
    assert len(rows) == 8 and sorted(np.asarray(labels)[rows]) == ["action"] * 4 + ["other"] * 4
    assert np.allclose(model.validation_proba_, model.predict_proba([texts[i] for i in rows]), atol=1e-6)
    none_held = EncoderClassifier(tiny_encoder, max_length=12, epochs=1, batch_size=8, validation_share=0.0,
                                  progress=False, device="cpu").fit(texts, labels)
    assert len(none_held.validation_rows_) == 0 and none_held.validation_proba_.shape == (0, 2)


def test_a_given_validation_set_chooses_the_epoch(tiny_encoder):
    """Early stopping on a corpus's own dev split: every training row trains, the
    validation texts score each epoch, and labels the training set lacks are refused."""
    texts, labels = data(repeat=2)
    valid_texts, valid_labels = ["Join us at the rally", "Nice weather today"], ["action", "other"]
    model = EncoderClassifier(tiny_encoder, max_length=12, epochs=2, batch_size=8, validation_share=0.25,
                              progress=False, device="cpu").fit(texts, labels, validation=(valid_texts, valid_labels))
    assert len(model.validation_rows_) == 0 and len(model.history_) == 2
    assert all("validation_weighted_f1" in record for record in model.history_)
    assert np.allclose(model.validation_proba_, model.predict_proba(valid_texts), atol=1e-6)
    with pytest.raises(ValueError, match="not in the training set: \\['spam'\\]"):
        EncoderClassifier(tiny_encoder, max_length=12, epochs=1, progress=False, device="cpu").fit(
            texts, labels, validation=(["x"], ["spam"]))
