"""Pages generated at build time from what was computed: the key results (from the
executed chapters' published results) and the performance record (from the benchmark
JSON files in ``benchmarks/results/``). Nothing on either page is typed by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdlens.core import plots
from crowdlens.core.config import atomic_path
from crowdlens.core.key_results import STUDIES, KeyResult, read_key_results

#: The studies of the key-results page, in page order, with their headings.
STUDY_HEADINGS = dict(zip(STUDIES, ["Participation in collective action (Pera & Aiello, 2025)",
                                     "Crowd response (SocialAlign, Zhang et al., 2025)"]))


@dataclass
class ChapterResults:
    """One executed chapter's published key results and the run that produced them."""

    chapter: str
    results: list[KeyResult]
    profile: str | None
    git_commit: str | None
    model_names: dict[str, Any]


def chapter_results(chapter: str, notebook: Path) -> ChapterResults | None:
    """The key results of ``chapter``'s executed ``notebook`` (None when not executed)."""
    if not notebook.is_file():
        return None
    content = json.loads(notebook.read_text(encoding="utf-8"))
    meta = content.get("metadata", {}).get("crowdlens", {})
    parameters = {**meta.get("defaults", {}), **meta.get("parameters", {})}
    models = {k: v for k, v in parameters.items() if k.endswith("_model")}
    return ChapterResults(chapter, read_key_results(content.get("cells", [])), meta.get("profile"),
                          meta.get("git_commit"), models)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def key_results_markdown(runs: list[ChapterResults | None], chapters: list[str]) -> str:
    """The key-results page: one table per study, each row a chapter's published number."""
    runs_by_chapter = {run.chapter: run for run in runs if run is not None}
    profiles = sorted({run.profile for run in runs_by_chapter.values() if run.profile})
    lines = [
        "# Key results",
        "",
        "The headline numbers of both studies, gathered when the book was built from the "
        "result cells of the executed chapters (never typed): each with its 95 % interval "
        "where it has one, the published figure beside it where the paper gives one, the "
        "protocol it follows, the model, the items it was computed on, the profile and "
        "commit of the run, and the section that explains it.",
        "",
    ]
    if "quick" in profiles:
        lines += [
            "```{warning}",
            "This build ran the **quick profile**: every number below comes from small "
            "samples of the data (the `n` column says how many items), so the intervals are "
            "wide and the values are not the studies' results. Build the full profile "
            "(`make book PROFILE=full`) for those; smoke tests on a handful of items are "
            "never listed here.",
            "```",
            "",
        ]
    missing = [c for c in chapters if c not in runs_by_chapter]
    for study, heading in STUDY_HEADINGS.items():
        rows = [(run, r) for c in chapters if c in runs_by_chapter
                for run in [runs_by_chapter[c]] for r in run.results if r.study == study]
        lines += [f"## {heading}", ""]
        if not rows:
            lines += ["No chapter of this study was executed in this build.", ""]
            continue
        lines += ["| result | value [95 % CI] | paper | protocol | model | n | run | explained in |",
                  "|---|---|---|---|---|---|---|---|"]
        for run, result in rows:
            commit = (run.git_commit or "unknown")[:10]
            lines.append("| " + " | ".join(_cell(x) for x in [
                result.quantity, result.formatted(), result.paper or "—", result.protocol or "—",
                result.model or "—", "—" if result.n is None else f"{result.n:,}",
                f"{run.profile} · `{commit}`"]) + f" | {{ref}}`{result.section}` |")
        lines.append("")
    if missing:
        lines += [f"Not executed in this build: {', '.join(missing)}.", ""]
    return "\n".join(lines)


def write_key_results_page(target: Path, notebooks: dict[str, Path]) -> Path:
    """Write the key-results page to ``target`` from ``notebooks`` (chapter → executed notebook)."""
    runs = [chapter_results(name, path) for name, path in notebooks.items()]
    text = key_results_markdown(runs, list(notebooks))
    with atomic_path(target, suffix=".md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


# The performance page ----------------------------------------------------------------

def load_benchmarks(folder: Path) -> dict[str, dict]:
    """Every ``<name>.json`` benchmark result in ``folder``, by name (unreadable ones skipped
    with their error in ``{"error": ...}``, so one broken file does not hide the rest)."""
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            found[path.stem] = {"error": f"{path.name} could not be read: {exc}"}
    return found


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def chapter_times_figure(benchmarks: dict[str, dict], path: Path) -> bool:
    """Bars of each chapter's seconds, one colour per profile (book_quick, book_full)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns


    rows = [{"chapter": chapter, "profile": result.get("profile") or name, "minutes": seconds / 60}
            for name, result in benchmarks.items() if name.startswith("book_")
            for chapter, seconds in (result.get("chapter_seconds") or {}).items() if seconds is not None]
    if not rows:
        return False
    plots.use_book_style()
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows)))
    sns.barplot(data=pd.DataFrame(rows), x="minutes", y="chapter", hue="profile", ax=ax)
    ax.set_xlabel("minutes on the benchmark machine")
    ax.set_ylabel("")
    ax.set_title("Chapter times by profile", loc="left")
    _save(fig, path)
    return True


def throughput_figure(result: dict, path: Path) -> bool:
    """Comments per second of each scoring backend, with the naive pipeline loop as a line."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns


    backends = pd.DataFrame(result.get("binary") or [])
    if backends.empty or not {"backend", "comments_per_s"} <= set(backends.columns):
        return False
    plots.use_book_style()
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.5 * len(backends)))
    sns.barplot(data=backends, x="comments_per_s", y="backend", color="#4c72b0", ax=ax)
    naive = result.get("naive_pipeline_batch1_comments_per_s")
    if naive:
        ax.axvline(naive, color="0.2", linestyle="--", linewidth=1)
        ax.annotate(f"naive pipeline loop: {naive:.0f}/s", (naive, -0.45), fontsize=9)
    ax.set_xlabel("comments per second")
    ax.set_ylabel("")
    ax.set_title("Scoring throughput by backend", loc="left")
    _save(fig, path)
    return True


def scaling_figure(result: dict, path: Path) -> bool:
    """Rows per second and peak memory against the rows scored (community scoring)."""
    import matplotlib.pyplot as plt
    import pandas as pd


    runs = pd.DataFrame(result.get("runs") or [])
    if runs.empty or not {"rows", "rows_per_s", "peak_rss_mib"} <= set(runs.columns):
        return False
    plots.use_book_style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, label in [(axes[0], "rows_per_s", "rows per second"),
                              (axes[1], "peak_rss_mib", "peak memory (MiB)")]:
        ax.plot(runs["rows"], runs[column], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("rows scored")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    fig.suptitle("Scoring the political corpus as it grows", x=0.01, ha="left")
    _save(fig, path)
    return True


#: Figures of the performance page: benchmark → (file name, drawing function, caption).
PERFORMANCE_FIGURES = {
    "classifier_throughput": ("throughput.png", throughput_figure,
                              "Scoring throughput per backend against the naive pipeline loop"),
    "community_scoring": ("scaling.png", scaling_figure, "Rows per second and peak memory against rows scored"),
}


def _target_rows(name: str, result: dict) -> list[str]:
    rows = []
    for target_name, target in (result.get("targets") or {}).items():
        verdict = "met" if target.get("met") else "**not met**"
        rows.append(f"| {name} | {target_name} | {target.get('value')} | {target.get('direction')} "
                    f"{target.get('goal')} | {verdict} |")
    return rows


def performance_markdown(benchmarks: dict[str, dict], figures: dict[str, str]) -> str:
    """The performance page from ``benchmarks`` and the drawn ``figures`` (name → file)."""
    lines = [
        "# Performance",
        "",
        "How fast the book and its models run, from the benchmark results committed in "
        "`benchmarks/results/` (each written by `python benchmarks/run.py NAME` with the "
        "commit, date and machine it ran on). This page is generated when the book is "
        "built; nothing on it is typed.",
        "",
    ]
    if not benchmarks:
        return "\n".join(lines + ["No benchmark has been run on this checkout yet: `make benchmarks`.", ""])
    if "chapters" in figures:
        lines += [f"```{{figure}} {figures['chapters']}", ":width: 90%", "",
                  "Chapter times in each profile that has been measured.", "```", ""]
    for name, (_, _, caption) in PERFORMANCE_FIGURES.items():
        if name in figures:
            lines += [f"```{{figure}} {figures[name]}", ":width: 90%", "", caption + ".", "```", ""]
        else:
            lines += [f"*{caption}:* not measured on this checkout yet (`python benchmarks/run.py {name}`).", ""]
    lines += ["## Targets", "", "| benchmark | target | value | goal | verdict |", "|---|---|---|---|---|"]
    for name, result in benchmarks.items():
        lines += _target_rows(name, result)
    lines += ["", "## Where each was measured", "", "| benchmark | commit | date | profile | CPU | cores | flags |",
              "|---|---|---|---|---|---|---|"]
    for name, result in benchmarks.items():
        if "error" in result:
            lines.append(f"| {name} | {_cell(result['error'])} | | | | | |")
            continue
        machine = result.get("machine") or {}
        lines.append("| " + " | ".join(_cell(x) for x in [
            name, f"`{(result.get('git_commit') or 'unknown')[:10]}`", result.get("date", "—"),
            result.get("profile") or "—", machine.get("cpu", "—"), machine.get("cores", "—"),
            ", ".join(machine.get("flags", [])) or "—"]) + " |")
    slowest = (benchmarks.get("book_quick") or {}).get("slowest_cells") or []
    if slowest:
        lines += ["", "## The quick book's slowest cells", "", "| chapter | seconds | cell |", "|---|---|---|"]
        lines += [f"| {c.get('chapter')} | {c.get('seconds')} | `{_cell(c.get('cell', ''))}` |" for c in slowest]
    lines.append("")
    return "\n".join(lines)


def write_performance_page(target: Path, results_folder: Path) -> Path:
    """Write the performance page to ``target`` and its figures beside it (``performance/``)."""
    benchmarks = load_benchmarks(results_folder)
    figure_dir = target.parent / "performance"
    figures = {}
    if chapter_times_figure(benchmarks, figure_dir / "chapters.png"):
        figures["chapters"] = "performance/chapters.png"
    for name, (file_name, draw, _) in PERFORMANCE_FIGURES.items():
        if name in benchmarks and "error" not in benchmarks[name] and draw(benchmarks[name], figure_dir / file_name):
            figures[name] = f"performance/{file_name}"
    text = performance_markdown(benchmarks, figures)
    with atomic_path(target, suffix=".md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
