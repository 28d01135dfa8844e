"""Tiny offline twins (work in progress)."""

from __future__ import annotations

VERSATILE = {}  # kind -> what it stands for (its Hub checkpoint)
VERSATILE_BUILDERS = {}  # kind -> a function returning the unsaved pipeline
VERSATILE_AS_PUBLISHED = {}  # kind -> model_index.json entries as the Hub checkpoint writes them
