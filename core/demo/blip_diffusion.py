"""Tiny offline twins (work in progress)."""

from __future__ import annotations

BLIP = {}  # kind -> what it stands for (its Hub checkpoint)
BLIP_BUILDERS = {}  # kind -> a function returning the unsaved pipeline
BLIP_AS_PUBLISHED = {}  # kind -> model_index.json entries as the Hub checkpoint writes them
