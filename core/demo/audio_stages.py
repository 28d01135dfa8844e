"""Tiny offline twins of the text-to-audio pipelines beyond AudioLDM that the Pipeline tab runs from their
signature: MusicLDM and AudioLDM 2 (filled in by the next commit)."""

from __future__ import annotations

AUDIO_STAGES: dict[str, str] = {}
AUDIO_STAGE_BUILDERS: dict = {}
