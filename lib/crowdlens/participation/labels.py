"""The participation labels of Pera & Aiello (2025), each defined once.

The four levels come from the data's schema (``crowdlens.data.schemas``); everything
else in the study reads them from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdlens.data.schemas import PARTICIPATION_LEVELS

#: No participation in collective action.
NONE = "None"
#: The binary task's positive class: any of the four levels.
PARTICIPATION = "Participation"
#: Levels of participation, lowest to highest.
LEVELS = PARTICIPATION_LEVELS
#: The five classes of the multiclass and layered tasks, "None" first.
FIVE_CLASSES = (NONE, *LEVELS)
#: Ladder order of the levels, used for "highest level reached".
LEVEL_RANK = {label: rank for rank, label in enumerate(FIVE_CLASSES)}
#: The tasks of the paper's evaluation.
TASKS = ("binary", "multiclass", "layered", "simplified")

#: One-line definitions (the book's wording of the authors' codebook), used in prompts.
DEFINITIONS = {
    NONE: "no collective-action problem is recognised, or the text only states a stance or fact",
    "Problem-Solution": "recognises a human-made, current, shared problem as a problem, may blame "
    "someone or propose how it should be fixed",
    "Call-to-action": "urges others to act or join (protest, boycott, organise, donate, vote, support) "
    "on a collective problem, often with urgency or imperatives",
    "Intention": "the author says they want, plan or are willing to act on a collective problem",
    "Execution": "the author reports having acted (protested, donated, volunteered, organised) "
    "or being an activist",
}

#: Systematic confusions between neighbouring categories (annotators make them; DPO's
#: rejected answers are drawn from them).
NEIGHBOURS = {
    NONE: "Problem-Solution",
    "Problem-Solution": NONE,
    "Call-to-action": "Problem-Solution",
    "Intention": "Execution",
    "Execution": "Intention",
}

#: The words a language model writes for each label (lower case, as a reader would).
LABEL_WORDS = {label: label.lower() for label in FIVE_CLASSES}


def task_labels(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Gold labels of ``frame`` for a task.

    binary: Participation (any level) vs None; simplified: the release's
    ``SimplifiedLabel`` (None where empty); multiclass and layered: the four levels + None.
    Used in the training chapter.
    """
    if task == "binary":
        return np.where(frame["Label"].notna(), PARTICIPATION, NONE)
    if task == "simplified":
        return frame["SimplifiedLabel"].fillna(NONE).to_numpy(dtype=object)
    if task in ("multiclass", "layered"):
        return frame["Label"].fillna(NONE).to_numpy(dtype=object)
    raise ValueError(f"task must be one of {TASKS}, not {task!r}")
