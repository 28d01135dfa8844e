"""A stand-in for Hugging Face's `spaces` package, for tests that pretend to run on ZeroGPU.

It records, to the JSON-lines file named by FAKE_SPACES_LOG: whether torch was already imported when `spaces`
was (ZeroGPU needs `spaces` first), each function decorated with `spaces.GPU`, and each call with the duration its
`duration` callable computed from that call's arguments. Calls run in this process (the real one forks a worker
with a GPU attached), after the arguments and the result went through pickle as they do on ZeroGPU.
"""

from __future__ import annotations

import json
import os
import pickle
import sys


def _log(**event) -> None:
    with open(os.environ["FAKE_SPACES_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


_log(event="import", torch_already_imported="torch" in sys.modules)


def GPU(fn=None, *, duration=60):  # the real name
    def decorate(func):
        _log(event="decorate", function=func.__name__)

        def wrapper(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
            _log(event="call", function=func.__name__, duration=seconds)
            return pickle.loads(pickle.dumps(func(*args, **kwargs)))

        return wrapper

    return decorate(fn) if fn is not None else decorate
