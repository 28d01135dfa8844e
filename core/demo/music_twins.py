"""Tiny offline twins (work in progress)."""

from __future__ import annotations

MUSIC = {}  # kind -> what it stands for (its Hub checkpoint)
MUSIC_BUILDERS = {}  # kind -> a function returning the unsaved pipeline
MUSIC_AS_PUBLISHED = {}  # kind -> model_index.json entries as the Hub checkpoint writes them
