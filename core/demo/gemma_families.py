"""Tiny offline twins of the image families with a Gemma text encoder: Sana, Lumina and Lumina 2 (filled in by the
next commit)."""

from __future__ import annotations

GEMMA_FAMILIES: dict[str, str] = {}
GEMMA_FAMILY_BUILDERS: dict = {}
