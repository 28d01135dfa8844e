"""The checkpoints already in the local Hugging Face cache: listed with their sizes and variants, and deletable.

huggingface_hub's `scan_cache_dir` does the scanning and its `DeleteCacheStrategy` the deleting; this module reads
diffusers' meaning into the file names.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import DeleteCacheStrategy, scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from core.checkpoints import DEFAULT_VARIANT, weight_variant
from core.errors import InvalidRequest


def cached_checkpoints(cache_dir: Path | None = None) -> list[dict]:
    """Every model repo in the cache, newest use first: id, kind (pipeline class, or a single model's class),
    variants, size on disk, revisions."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    rows = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        variants: set[str] = set()
        kind = ""
        for revision in repo.revisions:
            for f in revision.files:
                variant = weight_variant(f.file_name)
                if variant:
                    variants.add(variant)
            kind = kind or _kind(revision.snapshot_path)
        rows.append(
            {
                "id": repo.repo_id,
                "kind": kind or "files",
                "variants": sorted(variants, key=lambda v: (v != DEFAULT_VARIANT, v)),
                "bytes": repo.size_on_disk,
                "revisions": len(repo.revisions),
                "last_used": repo.last_accessed,
            }
        )
    return sorted(rows, key=lambda r: -r["last_used"])


def _kind(snapshot: Path) -> str:
    for name in ("model_index.json", "config.json", "vae/config.json"):
        path = snapshot / name
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8")).get("_class_name", "")
            except (OSError, ValueError):
                return ""
    return ""


def delete_cached(repo_id: str, cache_dir: Path | None = None) -> int:
    """Delete every cached revision of `repo_id`; returns the bytes freed."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        info = None
    repo = next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"), None) if info else None
    if repo is None:
        raise InvalidRequest(f"{repo_id!r} is not in the local Hugging Face cache; refresh the list.")
    # Not `info.delete_revisions(...)`: it selects revisions by commit hash across the whole cache, so a repo that
    # shares commits with this one (a mirror or a copy of it) would be deleted too. This strategy names one folder.
    strategy = DeleteCacheStrategy(
        expected_freed_size=repo.size_on_disk,
        blobs=frozenset(),
        refs=frozenset(),
        repos=frozenset({repo.repo_path}),
        snapshots=frozenset(),
    )
    strategy.execute()
    return strategy.expected_freed_size
