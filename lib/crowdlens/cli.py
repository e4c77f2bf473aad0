"""``crowdlens`` command line: build the book, rerun a chapter, fetch and check data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.table import Column, Table as RichTable

from crowdlens.book import runner
from crowdlens.data import DataError, check, data_dir
from crowdlens.data.fetch import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, fetch
from crowdlens.data.registry import load_collective_action
from crowdlens.participation.pretraining import domain_corpus, mlm_pretrain, pretraining_card

app = typer.Typer(help="CrowdLens: build the book, rerun chapters, fetch and check data.", no_args_is_help=True)
data_app = typer.Typer(help="Fetch and check the book's datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1):
    # the message is printed as it is: a pandas error's "[columns]" or a chapter name "[/x]" is text, not markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: The exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT = 130


def _interrupted(exc: KeyboardInterrupt):
    message = str(exc) if isinstance(exc, runner.Interrupted) else str(runner.Interrupted())
    err_console.print(escape(message), highlight=False, soft_wrap=True)
    raise typer.Exit(INTERRUPTED_EXIT)


def parse_param_args(args: list[str]) -> dict[str, str]:
    """``-p NAME VALUE`` (or ``-p NAME=VALUE``), repeatable, from the extra arguments."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if flag not in ("-p", "--param"):
            raise typer.BadParameter(f"unexpected argument {flag!r}; parameters are given as -p NAME VALUE")
        if i + 1 < len(args) and "=" in args[i + 1]:
            name, value = args[i + 1].split("=", 1)
            i += 2
        elif i + 2 < len(args):
            name, value = args[i + 1], args[i + 2]
            i += 3
        else:
            raise typer.BadParameter(f"{flag} needs a NAME and a VALUE, e.g. -p sample_rows 500")
        overrides[name] = value
    return overrides


#: ``--device``: sets the ``device`` parameter of every chapter (checked before any kernel starts).
DEVICE_HELP = ("where the models run: auto (a CUDA GPU, else Apple MPS, else the CPU), cpu, cuda, cuda:N or mps; "
               "default: each chapter's own (auto)")
PROFILE_HELP = ("quick (CI-sized samples), full (whole corpora) or paper (the papers' hub models on a CUDA GPU; "
                "see README)")


@app.command()
def book(
    profile: str = typer.Option("quick", "--profile", help=PROFILE_HELP),
    only: Optional[list[str]] = typer.Option(None, "--only", help="execute only these chapters (repeatable)"),
    force: bool = typer.Option(False, "--force", help="re-execute even when a cached result exists"),
    no_html: bool = typer.Option(False, "--no-html", help="execute chapters but skip the Jupyter Book build"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
):
    """Execute the chapters of the book's toc with papermill and build the HTML book."""
    try:
        runs = runner.build_book(profile=profile, only=only or None, force=force, html=not no_html, device=device)
    except runner.BookError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    for run in runs:
        console.print(f"{run.name}: {'cached' if run.cached else 'executed'} in {run.seconds:.1f} s", markup=False)
    if not no_html:
        console.print(f"book: {runner.html_dir() / 'index.html'}", markup=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    chapter: str = typer.Argument(..., metavar="CHAPTER", help="chapter name, e.g. data_tour"),
    profile: str = typer.Option("quick", "--profile", help=f"profile whose parameters the overrides modify: {PROFILE_HELP}"),
    force: bool = typer.Option(False, "--force", help="re-execute even when a cached result exists"),
    no_html: bool = typer.Option(False, "--no-html", help="skip rebuilding the HTML book"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
):
    """Run one chapter with parameter overrides, then rebuild the book.

    Overrides follow the chapter: -p NAME VALUE (repeatable), checked against the
    chapter's parameters cell before any kernel starts; --device sets its device
    parameter (as -p device VALUE would).
    """
    overrides = parse_param_args(ctx.args)
    try:
        runs = runner.build_book(profile=profile, only=[chapter], overrides={chapter: overrides},
                                 force=force, html=not no_html, device=device)
    except runner.BookError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    for run_ in runs:
        console.print(f"{run_.name}: {'cached' if run_.cached else 'executed'} in {run_.seconds:.1f} s "
                      f"with {run_.parameters}", markup=False)


@app.command()
def params(chapter: str = typer.Argument(..., metavar="CHAPTER", help="chapter name")):
    """List a chapter's parameters, their defaults, the values they allow and each profile's values."""
    try:
        defaults, allowed = runner.chapter_parameters(chapter), runner.chapter_allowed_values(chapter)
    except runner.BookError as exc:
        _fail(str(exc))
    # the declared range or choices, folded rather than cut off in a narrow terminal
    table = RichTable("parameter", "type", "default", Column("allowed", overflow="fold"), *runner.PROFILES)
    for name, default in defaults.items():
        rule = str(allowed[name]) if name in allowed else ""
        if rule and isinstance(default, list):
            rule = "each " + rule
        table.add_row(*map(Text, [name, type(default).__name__, repr(default), rule,
                                  *[repr(runner.PROFILES[p].get(chapter, {}).get(name, default)) for p in runner.PROFILES]]))
    console.print(table)


@app.command()
def pretrain(
    model: str = typer.Option("minilm", "--model", help="the encoder to adapt: an offline name, a hub id or a folder"),
    texts: int = typer.Option(100_000, "--texts", min=0, help="Reddit texts to sample (0 = all 808k: days on 2 cores)"),
    epochs: int = typer.Option(1, "--epochs", min=1),
    max_length: int = typer.Option(128, "--max-length", min=8, help="tokens per text"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", min=0),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Domain-adaptive masked-LM pretraining of an encoder on the unlabelled Reddit corpora,
    every test comment kept out; hours on 2 cores: it checkpoints, and the same command
    resumes a killed run. Prints the folder to fine-tune (``encoder_model``)."""
    try:
        corpus = domain_corpus(load_collective_action("test"), max_texts=texts, seed=seed, progress=True)
    except DataError as exc:
        _fail(str(exc))
    console.print(f"{len(corpus.texts):,} texts ({corpus.excluded_by_id} dropped by test CommentID, "
                  f"{corpus.excluded_by_text} for sharing a test comment's text or sentence)", markup=False)
    try:
        folder = mlm_pretrain(corpus, model, epochs=epochs, max_length=max_length, batch_size=batch_size, seed=seed,
                              device=device)
    except KeyboardInterrupt:
        err_console.print("interrupted: the last checkpoint is kept in the model cache; the same command resumes "
                          "from it", highlight=False, soft_wrap=True)
        raise typer.Exit(INTERRUPTED_EXIT)
    card = pretraining_card(folder)
    console.print(f"{folder}  ({card['steps']:,} steps in {card['seconds'] / 60:.1f} min; pass it as "
                  f"encoder_model)", markup=False)


@data_app.command("fetch")
def data_fetch(
    names: Optional[list[str]] = typer.Argument(None, help="sources or tables (default: all)"),
    dest: Optional[Path] = typer.Option(None, "--dest", help="data folder to fill (default: the user cache)"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest CSV (default: data/sources.csv)"),
    workers: int = typer.Option(8, "--workers", min=1, help="parallel downloads"),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=0.1,
                                  help="seconds one request waits for a connection or data"),
    deadline: float = typer.Option(DEFAULT_DEADLINE, "--deadline", min=1.0,
                                   help="seconds all downloads of this fetch may take (a rerun resumes)"),
):
    """Download the pinned upstream files (sha256-checked, resumable) and convert them to tables."""
    try:
        written = fetch(names or None, dest=dest, manifest=manifest, workers=workers, timeout=timeout,
                        deadline=deadline)
    except DataError as exc:
        _fail(str(exc))
    for table, path in written.items():
        console.print(f"{table}: {path}", markup=False)


@data_app.command("check")
def data_check(folder: Optional[Path] = typer.Argument(None, help="data folder (default: the resolved one)")):
    """Validate every table of a data folder and print rows and status."""
    target = folder if folder is not None else data_dir()
    report = check(target)
    problem = report.attrs.get("problem")
    # with no table at all, one note below says what to do instead of the same fix on every row
    columns = ["table", "file", "rows", "status"] + ([] if problem else ["fix"])
    table = RichTable(*columns, title=Text(f"data folder: {target}"))
    for row in report.itertuples():
        style = "green" if row.status.startswith("ok") else "red"
        rows = "" if row.rows is None or row.rows != row.rows else f"{int(row.rows):,}"
        cells = [Text(row.table), Text(str(row.file)), rows, Text(row.status, style=style)]
        table.add_row(*cells, *([] if problem else [Text(row.fix)]))
    console.print(table)
    if problem:
        console.print(Text(problem, style="red"), soft_wrap=True)
    if not report["status"].str.startswith("ok").all():
        raise typer.Exit(1)


def main():  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
