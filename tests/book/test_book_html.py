"""Browser check of the built book (marker ``book``): every page loads in headless
Debian Chromium with no console errors, internal links resolve, images render,
and the search page finds a word that the book contains."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urljoin, urldefrag, urlsplit

import pytest

HTML = Path(__file__).resolve().parents[2] / "book" / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.book


def pages() -> list[str]:
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html") if "_static" not in p.parts)


@pytest.fixture(scope="module")
def site():
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_book_has_the_expected_pages():
    names = pages()
    for expected in ["intro.html", "key_results.html", "chapters/data_tour.html", "teaching.html",
                     "provenance.html", "performance.html", "api.html", "references.html", "search.html"]:
        assert expected in names


def test_every_page_loads_cleanly_with_links_and_images(site, browser):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}")
            if r.url.startswith(site) else None)
    checked_links = 0
    for name in pages():
        url = urljoin(site, name)
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, f"{name}: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")  # index.html redirects to the intro page
        assert not problems, f"{name}: {problems}"
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.currentSrc || e.src, e.complete, e.naturalWidth])")
        for src, complete, width in images:
            assert complete and width > 0, f"{name}: image {src} did not render"
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for href in hrefs:
            target, _ = urldefrag(href)
            if not target.startswith(site):
                continue
            path = HTML / urlsplit(target).path[len(urlsplit(site).path):]
            if target.endswith("/"):
                path = path / "index.html"
            assert path.exists(), f"{name}: broken internal link {href}"
            checked_links += 1
    assert checked_links > 20
    page.close()


def test_data_tour_shows_figures_and_hidden_solutions(site, browser):
    page = browser.new_page()
    page.goto(urljoin(site, "chapters/data_tour.html"), wait_until="load")
    assert page.locator("img").count() >= 6  # the chapter's figures, computed at build time
    assert page.locator(".exercise").count() >= 3
    solution = page.locator(".solution.dropdown").first
    assert solution.count() == 1
    body = solution.locator(".admonition-title ~ *").first
    assert not body.is_visible()  # hidden until the reader asks
    solution.locator(".admonition-title").click()
    page.wait_for_timeout(300)
    assert body.is_visible()
    page.close()


def test_search_page_finds_a_word_from_the_book(site, browser):
    page = browser.new_page()
    page.goto(urljoin(site, "search.html?q=pseudonymised"), wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=15000)
    results = page.locator("#search-results ul.search li").all_inner_texts()
    assert any("tour" in r.lower() or "teaching" in r.lower() for r in results), results
    page.close()


def test_key_results_page_shows_computed_numbers_of_both_studies(site, browser):
    page = browser.new_page()
    page.goto(urljoin(site, "key_results.html"), wait_until="load")
    tables = page.locator("table")
    assert tables.count() == 2  # one per study
    for index in range(2):
        rows = tables.nth(index).locator("tbody tr").all_inner_texts()
        assert rows and all(re.search(r"\d\.\d{2}", row) for row in rows), rows  # computed values
        links = tables.nth(index).locator("tbody a.reference.internal")
        assert links.count() == len(rows)  # each number links to the section that explains it
        href = links.first.get_attribute("href")
        assert "chapters/" in href and "#" in href, href
    text = page.inner_text("main")
    assert "0.71" in text  # the paper's figure beside the chapter's own
    if "quick ·" in text:
        assert "quick profile" in text and "samples" in text
    page.close()


def test_performance_page_draws_the_committed_benchmarks(site, browser):
    page = browser.new_page()
    page.goto(urljoin(site, "performance.html"), wait_until="load")
    assert page.locator("main img").count() >= 1  # at least the chapter times
    assert "quick_book_seconds" in page.inner_text("main")
    page.close()


def test_provenance_page_lists_the_data_tour_run():
    text = (HTML / "provenance.html").read_text()
    assert "data_tour" in text and "sample_rows" in text and "papermill" in text


def test_api_reference_documents_every_layer_from_the_docstrings():
    text = (HTML / "api.html").read_text()
    for documented in ["crowdlens.core.hub.load_encoder", "crowdlens.data.registry.load_collective_action",
                       "crowdlens.participation.classifiers.Experiment", "crowdlens.participation.saved.load_classifier",
                       "crowdlens.crowd_response.replies.ReplyModel", "crowdlens.book.runner.build_book"]:
        assert f'id="{documented}"' in text, documented
    assert "Used in the training chapter" in text  # docstrings, not only signatures



def _output_tables_and_texts(page: Path):
    """The executed cells' outputs of a built page: (tables as header → cells, plain text)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    outputs = soup.select("div.cell_output")
    tables = []
    for table in (t for output in outputs for t in output.find_all("table")):
        rows = [[cell.get_text(" ", strip=True) for cell in row.find_all(["th", "td"])] for row in table.find_all("tr")]
        if rows:
            header = rows[0]
            tables.append({name: [row[i] for row in rows[1:] if i < len(row)] for i, name in enumerate(header)})
    return tables, "\n".join(output.get_text(" ", strip=True) for output in outputs)


def test_the_built_book_shows_only_pseudonymised_authors_and_masked_weibo_mentions():
    from crowdlens.crowd_response.replies import MENTION
    from crowdlens.data.pseudonym import NOT_PEOPLE, PSEUDONYM_PATTERN

    import re

    chapters = sorted((HTML / "chapters").glob("*.html"))
    assert chapters, "no built chapter pages"
    raw_authors, unmasked = [], []
    author_cells = 0
    for page in chapters:
        tables, text = _output_tables_and_texts(page)
        for table in tables:
            for column, cells in table.items():
                if column.lower() not in ("author", "user", "replier"):
                    continue
                for cell in cells:
                    author_cells += 1
                    if cell and cell not in NOT_PEOPLE and not re.fullmatch(PSEUDONYM_PATTERN, cell):
                        raw_authors.append(f"{page.name}: {column} = {cell[:3]}…")  # never print the name
        if page.stem == "weibo_crowds":  # Weibo texts: every @name is masked before it is shown
            unmasked += [f"{page.name}: {m[:2]}…" for m in MENTION.findall(text) if m != "@某用户"]
    assert raw_authors == [] and unmasked == []


def test_chapter_outputs_show_no_matplotlib_reprs():
    # a cell whose last line returns an Axes or Line2D prints "<Axes: ...>" above its figure;
    # such cells end with plt.show()
    leaks = []
    for page in sorted((HTML / "chapters").glob("*.html")):
        _, text = _output_tables_and_texts(page)
        leaks += [f"{page.stem}: {m}" for m in re.findall(r"<Axes: [^>]{0,40}|<matplotlib\.[\w.]+|\bText\(\d", text)]
    assert leaks == []
