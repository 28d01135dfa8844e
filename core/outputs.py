"""Saving finished images with their parameters, atomically, in one folder per visitor session."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from core import infotext


def parameters_text(info: dict[str, Any], index: int = 0) -> str:
    """The plain-text `parameters` block other Stable Diffusion tools write and read (AUTOMATIC1111's infotext,
    core.infotext), for image `index`."""
    return infotext.infotext(info, index)


def png_metadata(info: dict[str, Any], index: int = 0) -> PngImagePlugin.PngInfo:
    """PNG text chunks: `parameters` (plain text) and `diffusion_studio` (the full info as JSON)."""
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", parameters_text(info, index))
    meta.add_text("diffusion_studio", json.dumps({**info, "image_index": index}))
    return meta


def save_png_atomically(image: Image.Image, path: Path, meta: PngImagePlugin.PngInfo | None = None) -> Path:
    """Write `image` to `path` through a temporary file and a rename, so a crash never leaves a truncated PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=meta)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def session_folder_name(session: str) -> str:
    """A stable folder name for a session id that can't escape the outputs folder."""
    return hashlib.sha256(session.encode()).hexdigest()[:16]


class OutputStore:
    """The outputs folder: `<root>/<session>/<time>-<seed>.png`, kept under `max_bytes` (if set) by deleting the
    oldest files first, never the ones just written. With `max_session_bytes`, each visitor's own folder is kept
    under that first, so one visitor's burst deletes their own oldest images rather than someone else's."""

    def __init__(self, root: Path, max_bytes: int | None = None, max_session_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_session_bytes = max_session_bytes
        self._lock = threading.Lock()
        self._claimed: tuple[str, set[Path]] = ("", set())  # this second's stamps taken, by folder
        self.sweep_leftovers()

    def stamp(self, session: str) -> str:
        """A time stamp for one run's files in `session`'s folder (pass it to each save of the run)."""
        return self._stamp(self.root / session_folder_name(session))

    def _stamp(self, folder: Path) -> str:
        """This run's time stamp, free in `folder`: the first part of every file it saves. A second run in the same
        second with the same task and seed (the same names) gets `-2`, `-3`, ... and overwrites nothing."""
        second = time.strftime("%Y%m%d-%H%M%S")
        with self._lock:
            if self._claimed[0] != second:
                self._claimed = (second, set())
            taken = self._claimed[1]
            for n in itertools.count(1):
                stamp = second if n == 1 else f"{second}-{n}"
                if folder / stamp not in taken and not any(folder.glob(f"{stamp}-*")):
                    taken.add(folder / stamp)
                    return stamp
        raise AssertionError("unreachable")

    def sweep_leftovers(self, older_than_s: float = 600.0) -> list[Path]:
        """Delete the temporary files a killed save left behind (`.tmp-*`; the cap never counts them)."""
        if not self.root.is_dir():
            return []
        now, swept = time.time(), []
        for path in self.root.rglob(".tmp-*"):
            with contextlib.suppress(OSError):
                if path.is_file() and now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    swept.append(path)
        return swept

    def enforce_cap(self, keep: list[str], session: str | None = None) -> list[Path]:
        """Delete the oldest saved files until the session's folder and the whole folder are under their caps;
        returns what was deleted."""
        deleted = []
        if self.max_session_bytes is not None and session is not None:
            deleted += self._trim(self.root / session_folder_name(session), self.max_session_bytes, keep)
        if self.max_bytes is not None:
            deleted += self._trim(self.root, self.max_bytes, keep)
        return deleted

    def _trim(self, folder: Path, cap: int, keep: list[str]) -> list[Path]:
        with self._lock:
            files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
            stats = {p: p.stat() for p in files}
            total = sum(st.st_size for st in stats.values())
            kept = {str(Path(k)) for k in keep}
            deleted = []
            for path in sorted(files, key=lambda p: stats[p].st_mtime):
                if total <= cap:
                    break
                if str(path) in kept:
                    continue
                path.unlink(missing_ok=True)
                total -= stats[path].st_size
                deleted.append(path)
            return deleted

    def save(
        self, images: list[Image.Image], info: dict[str, Any], session: str, stamp: str | None = None
    ) -> list[str]:
        """Save each image with its metadata; returns the paths in image order."""
        folder = self.root / session_folder_name(session)
        stamp = stamp or self._stamp(folder)
        paths = []
        for i, image in enumerate(images):
            name = f"{stamp}-{info['task']}-{info['seeds'][i]}-{i}.png"
            paths.append(str(save_png_atomically(image, folder / name, png_metadata(info, i))))
        self.enforce_cap(paths, session)
        return paths

    def save_animation(
        self, frames: list[Image.Image], info: dict[str, Any], session: str, stamp: str | None = None
    ) -> dict[str, str]:
        """Save frames as a GIF and an MP4 (each written to a temporary name, then renamed)."""
        from diffusers.utils import export_to_gif, export_to_video

        folder = self.root / session_folder_name(session)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{stamp or self._stamp(folder)}-{info['task']}-{info['seeds'][0]}"
        files = {}
        for kind, export in (("gif", export_to_gif), ("mp4", export_to_video)):
            final = folder / f"{stem}.{kind}"
            tmp = folder / f".tmp-{stem}.{kind}"
            try:
                export(frames, str(tmp), fps=info.get("fps", 8))
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            files[kind] = str(final)
        self.enforce_cap(list(files.values()), session)
        return files

    def save_audio(
        self, clips: list[Any], rate: int, info: dict[str, Any], session: str, stamp: str | None = None
    ) -> dict[str, str]:
        """Save each clip as a 16-bit WAV carrying the info (a RIFF `ICMT` comment); the first is `wav`."""
        folder = self.root / session_folder_name(session)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{stamp or self._stamp(folder)}-{info['task']}"
        files = {}
        for i, clip in enumerate(clips):
            final = folder / f"{stem}-{info['seeds'][i]}-{i}.wav"
            _write_atomically(final, wav_bytes(clip, rate, json.dumps(info, default=str)))
            files["wav" if i == 0 else f"wav_{i + 1}"] = str(final)
        self.enforce_cap(list(files.values()), session)
        return files

    def save_meshes(
        self, meshes: list[Any], info: dict[str, Any], session: str, stamp: str | None = None
    ) -> dict[str, str]:
        """Save each mesh as a binary PLY (diffusers' `export_to_ply`) carrying the info in a header comment (the
        first is `ply`), and the first as `glb` too, for the page's viewer."""
        folder = self.root / session_folder_name(session)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{stamp or self._stamp(folder)}-{info['task']}"
        files = {}
        for i, mesh in enumerate(meshes):
            final = folder / f"{stem}-{info['seeds'][i]}-{i}.ply"
            _write_atomically(final, ply_bytes(mesh, json.dumps(info, default=str)))
            files["ply" if i == 0 else f"ply_{i + 1}"] = str(final)
        view = folder / f"{stem}-{info['seeds'][0]}-0.glb"  # the first, for the page's viewer
        _write_atomically(view, glb_bytes(meshes[0]))
        files["glb"] = str(view)
        self.enforce_cap(list(files.values()), session)
        return files

    def save_text(
        self, texts: list[str], info: dict[str, Any], session: str, stamp: str | None = None
    ) -> dict[str, str]:
        """Save a run's text (UniDiffuser's captions, one per line) with the info beside it: `text.txt` and its
        `.json`; images made with it carry the same info in their PNG."""
        folder = self.root / session_folder_name(session)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{stamp or self._stamp(folder)}-{info['task']}-{info['seeds'][0]}"
        files = {"txt": str(stem.with_suffix(".txt")), "json": str(stem.with_suffix(".json"))}
        _write_atomically(Path(files["txt"]), ("\n".join(texts) + "\n").encode("utf-8"))
        _write_atomically(Path(files["json"]), json.dumps(info, indent=2, default=str).encode("utf-8"))
        self.enforce_cap(list(files.values()), session)
        return files

    def list(self, session: str | None) -> list[Path]:
        """This session's saved images (every session's, for None), newest first."""
        folder = self.root / session_folder_name(session) if session is not None else self.root
        if not folder.is_dir():
            return []
        pattern = "*.png" if session is not None else "*/*.png"
        saved = []
        for path in folder.glob(pattern):
            if path.name.startswith(".tmp-"):  # a save under way
                continue
            with contextlib.suppress(OSError):  # deleted meanwhile (the cap)
                saved.append((path.stat().st_mtime, path))
        return [path for _mtime, path in sorted(saved, key=lambda item: item[0], reverse=True)]


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ply_bytes(mesh: Any, comment: str = "") -> bytes:
    """A binary PLY of a Shap-E mesh, as diffusers' `export_to_ply` writes it, with `comment` (one line: JSON) as a
    `comment` line of its header, where PLY readers keep such notes."""
    from diffusers.utils import export_to_ply

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mesh.ply"
        export_to_ply(mesh, str(path))
        data = path.read_bytes()
    if comment:
        line = "comment " + comment.replace("\n", " ").replace("\r", " ")
        magic, form, rest = data.split(b"\n", 2)  # "ply", then its format line: header lines may follow
        data = b"\n".join((magic, form, line.encode("ascii", "backslashreplace"), rest))
    return data


def glb_bytes(mesh: Any) -> bytes:
    """A GLB (binary glTF) of a Shap-E mesh with its vertex colours, written by trimesh: what the page's 3D viewer
    draws as a mesh (it takes a .ply for Gaussian splats)."""
    import numpy as np
    import trimesh

    colours = np.stack([mesh.vertex_channels[c].detach().float().cpu().numpy() for c in "RGB"], axis=1)
    shape = trimesh.Trimesh(
        vertices=mesh.verts.detach().float().cpu().numpy(),
        faces=mesh.faces.cpu().numpy(),
        vertex_colors=(colours.clip(0, 1) * 255).round().astype(np.uint8),
        process=False,  # as the model made it: no merging or reordering
    )
    return shape.export(file_type="glb")


def ply_comment(data: bytes) -> str | None:
    """The first `comment` line of a PLY's header (the studio's info), or None."""
    header = data.partition(b"end_header\n")[0]
    for line in header.split(b"\n"):
        if line.startswith(b"comment "):
            return line[len(b"comment ") :].decode("ascii", "replace")
    return None


def wav_bytes(clip: Any, rate: int, comment: str = "") -> bytes:
    """A 16-bit PCM WAV of `clip` ((channels, samples) or (samples,), floats in [-1, 1]), with `comment` in a
    LIST/INFO `ICMT` chunk after the samples, where WAV readers that don't know it skip it.

    The stdlib's `wave` writes the samples; it has no metadata chunks, and no library the app already needs does
    (soundfile would add libsndfile for this alone), so the comment chunk is appended by hand.
    """
    import io
    import struct
    import wave

    import numpy as np

    samples = np.asarray(clip, dtype=np.float32)
    samples = samples.reshape(-1, samples.shape[-1])  # (channels, samples)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(samples.shape[0])
        f.setsampwidth(2)
        f.setframerate(int(rate))
        f.writeframes((np.clip(samples.T, -1, 1) * 32767).round().astype("<i2").tobytes())
    data = buffer.getvalue()
    if not comment:
        return data
    text = comment.encode("utf-8") + b"\0"
    text += b"\0" * (len(text) % 2)  # chunks are word-aligned
    info = b"INFO" + b"ICMT" + struct.pack("<I", len(text)) + text
    data += b"LIST" + struct.pack("<I", len(info)) + info
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]


def wav_comment(path: str | os.PathLike) -> str | None:
    """The `ICMT` comment of a WAV file written by `wav_bytes`, or None."""
    import struct

    data = Path(path).read_bytes()
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        body = data[at + 8 : at + 8 + size]
        if chunk == b"LIST" and body[:4] == b"INFO":
            inner = 4
            while inner + 8 <= len(body):
                key, length = body[inner : inner + 4], struct.unpack("<I", body[inner + 4 : inner + 8])[0]
                if key == b"ICMT":
                    return body[inner + 8 : inner + 8 + length].rstrip(b"\0").decode("utf-8", "replace")
                inner += 8 + length + length % 2
        at += 8 + size + size % 2
    return None
