"""Headline numbers that a chapter publishes to the book's key-results page.

A chapter computes its results, then hands the headline ones to ``publish`` in a
hidden cell; the book runner reads them back from the executed notebook
(``read_key_results``) and writes the key-results page at the front of the book. So
the page is never typed: each number on it is the one the chapter printed, with its
interval, its protocol and the section that explains it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

#: The output type a chapter's key results travel in (a notebook output's mime type).
KEY_RESULTS_MIME = "application/vnd.crowdlens.key-results+json"
#: The two studies a key result can belong to.
STUDIES = ("participation", "crowd response")


@dataclass(frozen=True)
class KeyResult:
    """One headline number of a chapter.

    ``quantity`` says what was measured ("weighted F1, five classes"); ``value`` and,
    where there is one, its 95 % interval ``ci_low``–``ci_high``; ``paper`` the
    published figure it stands beside ("" where the paper has none); ``protocol``
    what it used (e.g. no test labels); ``model``; ``n`` the items it was computed on;
    ``section`` the label of the chapter section that explains it (``(label)=`` in
    the chapter). Used in the annotation, reddit_communities, training and
    weibo_crowds chapters.
    """

    study: str
    quantity: str
    value: float
    section: str
    ci_low: float | None = None
    ci_high: float | None = None
    paper: str = ""
    protocol: str = ""
    model: str = ""
    n: int | None = None
    digits: int = 3

    def __post_init__(self):
        if self.study not in STUDIES:
            raise ValueError(f"unknown study {self.study!r}: use one of {', '.join(map(repr, STUDIES))}")
        if not self.quantity or not self.section:
            raise ValueError("a key result needs a quantity and the section label that explains it")
        for name in ("value", "ci_low", "ci_high"):
            number = getattr(self, name)
            if number is not None and not isinstance(number, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(number).__name__}: pass float(...)")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("give both ends of the interval (ci_low and ci_high) or neither")

    def formatted(self) -> str:
        """The value with its interval, e.g. "0.612 [0.570, 0.655]"; "not computed" for NaN."""
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "not computed"
        text = f"{self.value:.{self.digits}f}"
        if self.ci_low is not None:
            text += f" [{self.ci_low:.{self.digits}f}, {self.ci_high:.{self.digits}f}]"
        return text

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("value", "ci_low", "ci_high"):  # JSON has no NaN
            if isinstance(values[name], float) and math.isnan(values[name]):
                values[name] = None
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "KeyResult":
        known = {f.name for f in fields(cls)}
        value = values.get("value")
        return cls(**{**{k: v for k, v in values.items() if k in known},
                      "value": float("nan") if value is None else value})


def publish(results: Sequence[KeyResult]):
    """Display ``results`` as one notebook output the book runner reads back (put the
    call in a cell tagged ``remove-cell``: the reader sees the chapter's own tables).
    Used in the annotation, reddit_communities, training and weibo_crowds chapters."""
    from IPython.display import display

    results = list(results)
    if not all(isinstance(r, KeyResult) for r in results):
        raise TypeError("publish takes KeyResult objects")
    display({KEY_RESULTS_MIME: [r.to_json() for r in results],
             "text/plain": f"{len(results)} key results for the key-results page"}, raw=True)


def read_key_results(cells: Iterable[dict]) -> list[KeyResult]:
    """The key results published in a notebook's ``cells`` (executed), in order."""
    found = []
    for cell in cells:
        for output in cell.get("outputs", []):
            for values in output.get("data", {}).get(KEY_RESULTS_MIME, []):
                found.append(KeyResult.from_json(values))
    return found
