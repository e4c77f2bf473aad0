"""Moved to ``crowdlens.participation.llm_labels``, ``crowdlens.participation.labels`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.participation.llm_labels', 'crowdlens.participation.labels'])
