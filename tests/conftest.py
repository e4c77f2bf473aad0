"""Shared fixtures: the real shared data (skipped with a reason when absent) and a
local HTTP server on 127.0.0.1 that serves hand-made upstream-format files."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
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

