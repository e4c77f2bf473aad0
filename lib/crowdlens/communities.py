"""Moved to ``crowdlens.participation.communities``, ``crowdlens.core.sampling``, ``crowdlens.data.reddit``, ``crowdlens.data.pseudonym`` (this path is kept for one release)."""

from crowdlens.core.moved import moved_module

__getattr__ = moved_module(__name__, ['crowdlens.participation.communities', 'crowdlens.core.sampling', 'crowdlens.data.reddit', 'crowdlens.data.pseudonym'])
