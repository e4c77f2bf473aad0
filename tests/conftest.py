"""Shared fixtures: the real shared data (skipped with a reason when absent) and a
local HTTP server on 127.0.0.1 that serves hand-made upstream-format files."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from crowdlens.data.registry import TABLES, shared_data_dir

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM = FIXTURES / "upstream"


def real_data_dir() -> Path | None:
    """The real corpora: CROWDLENS_DATA when it holds every registry table (a copy of
    the shared data elsewhere, e.g. a clone outside the project folder), else
    ../shared/data beside the checkout, else None."""
    env = os.environ.get("CROWDLENS_DATA")
    if env and all((Path(env).expanduser() / table.relpath).is_file() for table in TABLES.values()):
        return Path(env).expanduser()
    return shared_data_dir()


SHARED = real_data_dir()
SKIP_REASON = ("the real-data tests need the shared corpora: place them at ../shared/data "
               "or set CROWDLENS_DATA to a folder holding every registry table")


@pytest.fixture
def shared_data(monkeypatch):
    """The real data folder, set as CROWDLENS_DATA so the loaders resolve to it."""
    if SHARED is None:
        pytest.skip(SKIP_REASON)
    monkeypatch.setenv("CROWDLENS_DATA", str(SHARED))
    return SHARED


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus HTTP Range (206), and a log of Range headers seen."""

    range_requests: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().do_GET()
        type(self).range_requests.append(header)
        start = int(header.split("=")[1].split("-")[0])
        data = path.read_bytes()[start:]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{path.stat().st_size}")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def upstream_server():
    """Serve tests/fixtures/upstream at http://127.0.0.1:<port>/ for the test's duration."""
    RangeRequestHandler.range_requests = []
    handler = functools.partial(RangeRequestHandler, directory=str(UPSTREAM))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def write_manifest(path: Path, base_url: str, overrides: dict[str, str] | None = None) -> Path:
    """A manifest in data/sources.csv's format for every fixture file, with real sha256s."""
    dataset_of = {
        "ariannap13": "collective_action",
        "rosaunde": "reddit_political_2017_2018",
        "KellyGothard": "reddit_us_local_covid_2020",
        "thunlp": "weibo_ced",
        "BrownSweater": "weibo_smp2020_ewect",
    }
    overrides = overrides or {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "url", "sha256", "bytes"])
        for file in sorted(UPSTREAM.rglob("*")):
            if not file.is_file():
                continue
            rel = file.relative_to(UPSTREAM).as_posix()
            digest = overrides.get(rel, hashlib.sha256(file.read_bytes()).hexdigest())
            writer.writerow([dataset_of[rel.split("/")[0]], f"{base_url}/{rel}", digest, file.stat().st_size])
    return path


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh CROWDLENS_CACHE so no test reads or writes the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CROWDLENS_CACHE", str(cache))
    return cache


# Devices -----------------------------------------------------------------------------

def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


#: The devices a model test runs on: always the CPU; CUDA and MPS where this machine has them.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not _cuda_available(), reason="needs a CUDA GPU: PyTorch sees none on this machine")]),
    pytest.param("mps", id="mps", marks=pytest.mark.skipif(
        not _mps_available(), reason="needs Apple's MPS backend: PyTorch sees none on this machine")),
]

#: A chat template simple enough for a tokenizer that has none (the tiny models' BERT tokenizer).
TINY_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}answer:{% endif %}")


def _tiny_tokenizer(folder: Path):
    """The offline MiniLM tokenizer with an end token and a chat template, saved in ``folder``."""
    from crowdlens.core.hub import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    # no token_type_ids: a causal LM takes none (an init argument, so it goes in the saved config)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["model_input_names"] = ["input_ids", "attention_mask"]
    config_file.write_text(json.dumps(config))
    return tokenizer


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> str:
    """A randomly initialised two-layer Llama (hidden size 32) with the MiniLM vocabulary,
    saved as a model folder: loads and trains in well under a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = _tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.cls_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A randomly initialised two-layer BERT (hidden size 32) with the MiniLM vocabulary."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = _tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def pytest_collection_modifyitems(config, items):
    # book tests need the built quick book; `make test` builds it first and says so
    if os.environ.get("CROWDLENS_BOOK_BUILT") == "1":
        return
    if (Path(__file__).parents[1] / "book" / "_build" / "html" / "index.html").is_file():
        return
    skip = pytest.mark.skip(reason="book/_build/html is absent: run `make book` (make test builds it first)")
    for item in items:
        if item.get_closest_marker("book") is not None:  # the marker, not the tests/book folder
            item.add_marker(skip)


#: The front matter of a hand-made MyST chapter, as jupytext writes the book's chapters.
MYST_HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""



# Benchmarks ------------------------------------------------------------------------------

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_benchmark(name: str):
    """The module ``benchmarks/bench_<name>.py``, loaded as benchmarks/run.py loads it
    (its sibling ``chapter_runs`` importable while it loads)."""
    import importlib.util
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"bench_{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("cpu_unchanged")``: a benchmark module, for its tests."""
    return _load_benchmark
