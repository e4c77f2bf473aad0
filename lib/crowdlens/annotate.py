"""Moved to ``crowdlens.participation.labels``, ``crowdlens.participation.lexicon``, ``crowdlens.participation.crowds``, ``crowdlens.participation.llm_labels`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.participation.labels', 'crowdlens.participation.lexicon', 'crowdlens.participation.crowds', 'crowdlens.participation.llm_labels'], {'LABELS': 'crowdlens.participation.labels.FIVE_CLASSES'})
