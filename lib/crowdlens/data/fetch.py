"""Download the pinned upstream files of ``data/sources.csv`` and rebuild the tables.

Every file is fetched over HTTP(S) into ``<dest>/raw/<owner>/<repo>/<commit>/<path>``,
resumed from a ``.part`` file when a previous run was cut off (HTTP Range),
checked against its sha256 and only then renamed into place. Conversion
(``crowdlens.data.convert``) writes each table atomically as well.
"""

from __future__ import annotations

import csv
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from crowdlens.core.config import PACKAGE_DIR, project_root, sha256_file
from crowdlens.data.convert import convert_source
from crowdlens.data.registry import DataError, default_cache_data_dir, sources_for

GITHUB_RAW = "https://raw.githubusercontent.com"


class ChecksumError(DataError):
    def __init__(self, path: Path, url: str, expected: str, actual: str):
        self.path, self.url, self.expected, self.actual = path, url, expected, actual
        super().__init__(
            f"sha256 mismatch for {path.name} from {url}: expected {expected}, got {actual}. "
            f"The partial file was removed; run `crowdlens data fetch` again, and if it "
            f"persists the upstream file changed (check the URL's pinned commit) or a proxy "
            f"altered it."
        )


class DownloadError(DataError):
    pass


@dataclass(frozen=True)
class SourceFile:
    """One row of the manifest: an upstream file pinned by URL, sha256 and size."""

    dataset: str
    url: str
    sha256: str
    bytes: int

    @property
    def relpath(self) -> str:
        """Where the file lands under ``raw/``: the URL path (owner/repo/commit/path)."""
        return urlsplit(self.url).path.lstrip("/")

    def resolved_url(self) -> str:
        mirror = os.environ.get("CROWDLENS_MIRROR")
        if mirror and self.url.startswith(GITHUB_RAW):
            return mirror.rstrip("/") + self.url[len(GITHUB_RAW):]
        return self.url


def default_manifest() -> Path:
    root = project_root()
    candidates = [root / "data" / "sources.csv"] if root else []
    candidates.append(PACKAGE_DIR / "sources.csv")
    for path in candidates:
        if path.is_file():
            return path
    raise DataError("the data manifest data/sources.csv is missing from the project checkout")


def read_manifest(path: Path | str | None = None) -> list[SourceFile]:
    path = Path(path) if path is not None else default_manifest()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        expected = {"dataset", "url", "sha256", "bytes"}
        if not expected <= set(reader.fieldnames or []):
            raise DataError(f"{path}: a manifest needs the columns {sorted(expected)}")
        return [SourceFile(r["dataset"], r["url"], r["sha256"].lower(), int(r["bytes"])) for r in reader]


def _download_one(entry: SourceFile, raw_dir: Path, progress: tqdm | None, timeout: float) -> Path:
    final = raw_dir / entry.relpath
    if final.is_file() and final.stat().st_size == entry.bytes and sha256_file(final) == entry.sha256:
        if progress is not None:
            progress.update(entry.bytes)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > entry.bytes:  # cannot be a prefix of the right file
        part.unlink()
        have = 0
    request = urllib.request.Request(entry.resolved_url(), headers={"User-Agent": "crowdlens-fetch"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and response.status == 206
            if not resumed and have:
                have = 0  # server ignored Range: start over
            if progress is not None and have:
                progress.update(have)
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    if progress is not None:
                        progress.update(len(block))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DownloadError(
            f"could not download {entry.resolved_url()} ({exc}). The partial file {part} is kept "
            f"and the next `crowdlens data fetch` resumes it. Offline? Point CROWDLENS_DATA at a "
            f"copy of the data, or set CROWDLENS_MIRROR to a mirror of {GITHUB_RAW}."
        ) from exc
    actual = sha256_file(part)
    if actual != entry.sha256:
        part.unlink()
        raise ChecksumError(final, entry.resolved_url(), entry.sha256, actual)
    os.replace(part, final)
    return final


def download(
    entries: list[SourceFile],
    raw_dir: Path,
    workers: int = 8,
    progress: bool = True,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch ``entries`` into ``raw_dir`` (resumable, verified); returns their local paths."""
    total = sum(e.bytes for e in entries)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=not progress)
    paths: dict[SourceFile, Path] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(_download_one, e, raw_dir, bar, timeout): e for e in entries}
            for future in as_completed(futures):
                paths[futures[future]] = future.result()
    finally:
        bar.close()
    return [paths[e] for e in entries]


def fetch(
    names: list[str] | None = None,
    dest: Path | str | None = None,
    manifest: Path | str | None = None,
    workers: int = 8,
    progress: bool = True,
) -> dict[str, Path]:
    """Download and convert the named sources (or tables) into ``dest``.

    ``dest`` defaults to the user cache's data folder, where the loaders look
    last. Returns the path of every table written.
    """
    dest = Path(dest) if dest is not None else default_cache_data_dir()
    entries = read_manifest(manifest)
    written: dict[str, Path] = {}
    for source in sources_for(names):
        chosen = [e for e in entries if e.dataset == source]
        if not chosen:
            raise DataError(f"the manifest lists no files for '{source}'")
        local = download(chosen, dest / "raw", workers=workers, progress=progress)
        written.update(convert_source(source, list(zip(chosen, local)), dest, progress=progress))
    return written
