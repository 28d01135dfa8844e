"""Errors the engine raises for people to read.

Every message says what went wrong and what to do about it. The UI shows `StudioError` messages as they are;
any other exception is a bug and is shown as a generic failure.
"""

from __future__ import annotations


class StudioError(Exception):
    """A failure a user can act on; its message is meant to be shown as is."""


class InvalidRequest(StudioError, ValueError):
    """The request's parameters are out of range, missing, or of the wrong kind."""


class LoadError(StudioError):
    """A checkpoint, VAE or other component could not be loaded; whatever was loaded before still serves."""


class NotLoaded(StudioError):
    """Nothing is loaded yet, or the loaded checkpoint can't serve the task asked for."""


class Stopped(StudioError):
    """A request was stopped (Stop, or its tab closed) while it waited for its turn: nothing ran."""


class OutOfMemory(StudioError):
    """A run needed more device memory than there was; its memory is freed and the model stays loaded."""
