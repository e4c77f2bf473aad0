"""Download the pinned upstream files of ``data/sources.csv`` and rebuild the tables.

Every file is fetched over HTTP(S) into ``<dest>/raw/<owner>/<repo>/<commit>/<path>``,
resumed from a ``.part`` file when a previous run was cut off (HTTP Range),
checked against its sha256 and only then renamed into place. Conversion
(``crowdlens.data.convert``) writes each table atomically as well.

The first failed file stops the fetch at once (no machine offline waits for
thousands of queued files to fail one by one); each socket wait is bounded by
``timeout`` and the whole fetch by ``deadline``.
"""

from __future__ import annotations

import csv
import http.client
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as WaitTimeout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from crowdlens.core.config import PACKAGE_DIR, project_root, sha256_file
from crowdlens.data.convert import convert_source
from crowdlens.data.registry import DataError, default_cache_data_dir, sources_for

GITHUB_RAW = "https://raw.githubusercontent.com"
#: Seconds one request may wait for a connection or the next bytes before it gives up.
DEFAULT_TIMEOUT = 15.0
#: Seconds the downloads of one fetch may take in all (the whole manifest, ~425 MB,
#: still fits at ~60 kB/s); a rerun resumes where a stopped fetch left off.
DEFAULT_DEADLINE = 2 * 3600.0


class ChecksumError(DataError):
    def __init__(self, path: Path, url: str, expected: str, actual: str):
        self.path, self.url, self.expected, self.actual = path, url, expected, actual
        super().__init__(
            f"sha256 mismatch for {path.name} from {url}: expected {expected}, got {actual}. "
            f"The partial file was removed.",
            "Run `crowdlens data fetch` again, and if it persists the upstream file changed "
            "(check the URL's pinned commit) or a proxy altered it.",
        )


class DownloadError(DataError):
    pass


class _Stopped(Exception):
    """A download gave up because the fetch is stopping (another failed, or the deadline)."""


def _elsewhere_advice() -> str:
    """The ways to get the data without reaching the upstream host."""
    mirror = os.environ.get("CROWDLENS_MIRROR")
    now = f" (now {mirror}: check it)" if mirror else ""
    return (f"Fetch from a mirror: set CROWDLENS_MIRROR to a mirror of {GITHUB_RAW}{now}. Or skip "
            f"the download: set CROWDLENS_DATA to a folder holding the converted tables, or place "
            f"the shared data folder at ../shared/data beside the project.")


def _download_error(entry: SourceFile, exc: Exception, connected: bool, part: Path) -> DownloadError:
    url = entry.resolved_url()
    host = urlsplit(url).netloc
    if isinstance(exc, urllib.error.HTTPError):
        cause = (f"could not download {url}: {host} answered HTTP {exc.code} {exc.reason}; the URL "
                 f"is wrong or the server lacks the file.")
    elif connected:
        cause = (f"could not download {url}: the connection to {host} broke off ({exc}); the "
                 f"network looks offline or unreliable.")
    else:
        cause = (f"could not download {url} ({exc}): no answer from {host}; this machine looks "
                 f"offline, or a firewall or proxy blocks {host}.")
    # say only what is true: a partial file is mentioned when one is kept
    kept = part.stat().st_size if part.is_file() else 0
    if kept:
        cause += (f" The partial file {part} ({kept:,} bytes) is kept and the next "
                  f"`crowdlens data fetch` resumes it.")
    return DownloadError(cause, _elsewhere_advice())


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


def _download_one(entry: SourceFile, raw_dir: Path, progress: tqdm | None, timeout: float,
                  context: ssl.SSLContext, stop: threading.Event, deadline_at: float) -> Path:
    if stop.is_set():  # queued before the fetch began to stop
        raise _Stopped
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
    remaining = deadline_at - time.monotonic()
    if remaining <= 0:
        raise _Stopped
    cut_to_deadline = remaining < timeout
    connected = False
    try:
        # no socket wait outlives the deadline; the shared context saves loading the CA store per file
        with urllib.request.urlopen(request, timeout=min(timeout, remaining), context=context) as response:
            connected = True
            resumed = have and response.status == 206
            if not resumed and have:
                have = 0  # server ignored Range: start over
            if progress is not None and have:
                progress.update(have)
            with open(part, "ab" if resumed else "wb") as out:
                got = have
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    got += len(block)
                    if progress is not None:
                        progress.update(len(block))
                    # a file whose bytes are all here is finished, not left as a .part
                    if got < entry.bytes and (stop.is_set() or time.monotonic() > deadline_at):
                        raise _Stopped  # what is written stays in the .part file for a resume
            if response.length:  # bytes the server announced never came: a cut, not a bad file
                raise http.client.IncompleteRead(b"", response.length)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        _drop_if_empty(part)
        timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
        if cut_to_deadline and timed_out:
            raise _Stopped from exc  # the wait was cut to the deadline: not the network's fault
        raise _download_error(entry, exc, connected, part) from exc
    except BaseException:
        _drop_if_empty(part)
        raise
    actual = sha256_file(part)
    if actual != entry.sha256:
        part.unlink()
        raise ChecksumError(final, entry.resolved_url(), entry.sha256, actual)
    os.replace(part, final)
    return final


def _download_or_stop(entry: SourceFile, raw_dir: Path, progress: tqdm | None, timeout: float,
                      context: ssl.SSLContext, stop: threading.Event, deadline_at: float,
                      failures: list[BaseException]) -> Path:
    try:
        return _download_one(entry, raw_dir, progress, timeout, context, stop, deadline_at)
    except _Stopped:
        stop.set()
        raise
    except BaseException as exc:
        failures.append(exc)  # before stop: whoever sees a _Stopped finds the failure behind it
        # stop here, not when the main thread gets round to it: no worker starts another file
        stop.set()
        raise


def _drop_if_empty(part: Path) -> None:
    # an empty .part resumes nothing: leave no such file behind
    if part.is_file() and part.stat().st_size == 0:
        part.unlink(missing_ok=True)


def _deadline_error(deadline: float, done: int, total: int) -> DownloadError:
    return DownloadError(
        f"the download did not finish within its deadline of {deadline:,.0f} s ({done} of this "
        f"source's {total} files in place).",
        f"Run `crowdlens data fetch` again to go on (finished files are kept and verified, partial "
        f"ones resumed), if need be with a longer --deadline. {_elsewhere_advice()}",
    )


def download(
    entries: list[SourceFile],
    raw_dir: Path,
    workers: int = 8,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    context: ssl.SSLContext | None = None,
) -> list[Path]:
    """Fetch ``entries`` into ``raw_dir`` (resumable, verified); returns their local paths.

    The first failure stops the whole download: queued files are cancelled, running
    ones stop at their next block (each socket wait is at most ``timeout`` s), and
    the error is raised. ``deadline`` bounds the whole call in seconds.
    """
    context = context if context is not None else ssl.create_default_context()
    return _download(entries, raw_dir, workers, progress, timeout, deadline, time.monotonic() + deadline, context)


def _download(entries: list[SourceFile], raw_dir: Path, workers: int, progress: bool, timeout: float,
              deadline: float, deadline_at: float, context: ssl.SSLContext) -> list[Path]:
    # ``deadline`` (seconds, for the message) ends at ``deadline_at`` (monotonic clock)
    stop = threading.Event()
    failures: list[BaseException] = []
    total = sum(e.bytes for e in entries)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=not progress)
    paths: dict[SourceFile, Path] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {pool.submit(_download_or_stop, e, raw_dir, bar, timeout, context, stop, deadline_at,
                               failures): e for e in entries}
        finished = as_completed(futures, timeout=max(0.0, deadline_at - time.monotonic()))
        while True:
            try:
                future = next(finished)
            except StopIteration:
                break
            except WaitTimeout:
                raise _deadline_error(deadline, len(paths), len(entries)) from None
            try:
                paths[futures[future]] = future.result()
                continue
            except _Stopped:  # stopped by the first failure, or else by the deadline
                if not failures:
                    raise _deadline_error(deadline, len(paths), len(entries)) from None
                failure = failures[0]
            except BaseException as exc:
                failure = failures[0] if failures else exc
            if isinstance(failure, DownloadError):
                raise DownloadError(
                    f"{failure.cause} The fetch stopped at this first failure with {len(paths)} of "
                    f"{len(entries)} files in place.", failure.fix) from failure
            raise failure
    except BaseException:
        stop.set()  # running downloads give up at their next block
        raise
    finally:
        # cancel what has not started; the running ones end within one socket timeout
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return [paths[e] for e in entries]


def fetch(
    names: list[str] | None = None,
    dest: Path | str | None = None,
    manifest: Path | str | None = None,
    workers: int = 8,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
) -> dict[str, Path]:
    """Download and convert the named sources (or tables) into ``dest``.

    ``dest`` defaults to the user cache's data folder, where the loaders look
    last. ``timeout`` bounds each socket wait and ``deadline`` the downloads of the
    whole call, in seconds. Returns the path of every table written.
    """
    dest = Path(dest) if dest is not None else default_cache_data_dir()
    entries = read_manifest(manifest)
    context = ssl.create_default_context()  # one for every request of this fetch
    deadline_at = time.monotonic() + deadline
    written: dict[str, Path] = {}
    for source in sources_for(names):
        chosen = [e for e in entries if e.dataset == source]
        if not chosen:
            raise DataError(f"the manifest lists no files for '{source}'")
        local = _download(chosen, dest / "raw", workers, progress, timeout, deadline, deadline_at, context)
        written.update(convert_source(source, list(zip(chosen, local)), dest, progress=progress))
    return written
