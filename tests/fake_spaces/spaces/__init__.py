"""A stand-in for Hugging Face's `spaces` package, for tests that pretend to run on ZeroGPU.

It records, to the JSON-lines file named by FAKE_SPACES_LOG: whether torch was already imported when `spaces`
was (ZeroGPU needs `spaces` first), each function decorated with `spaces.GPU`, and each call with the duration its
`duration` callable computed from that call's arguments and the id of the process it ran in.

Each call runs as on ZeroGPU: in a child forked from the server process (where the real one attaches the GPU),
its arguments inherited and its result (or its exception) sent back through a pipe, pickled. Whatever the call
changes in memory stays in the child, which exits after the call; only its result and what it wrote to disk come
back. (The tests start the app with one OpenMP thread, OMP_NUM_THREADS=1: a child forked from a process whose
OpenMP pool has started can hang in its first parallel region.)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sys
import traceback


def _log(**event) -> None:
    with open(os.environ["FAKE_SPACES_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


_log(event="import", torch_already_imported="torch" in sys.modules)


def _in_child(writer, func, args, kwargs) -> None:
    try:
        outcome = ("result", func(*args, **kwargs))
    except BaseException as e:  # sent back and raised in the server, as ZeroGPU does
        outcome = ("error", e, traceback.format_exc())
    try:
        writer.send_bytes(pickle.dumps(outcome))
    except Exception as e:  # a result that does not pickle fails there too
        writer.send_bytes(pickle.dumps(("error", TypeError(f"the result did not pickle: {e}"), "")))
    writer.close()


def GPU(fn=None, *, duration=60):  # the real name
    def decorate(func):
        _log(event="decorate", function=func.__name__)

        def wrapper(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            context = multiprocessing.get_context("fork")
            reader, writer = context.Pipe(duplex=False)
            child = context.Process(target=_in_child, args=(writer, _logged(func, seconds), args, kwargs))
            child.start()
            writer.close()
            try:
                outcome = pickle.loads(reader.recv_bytes())
            except EOFError:
                child.join()
                raise RuntimeError(f"the GPU worker died (exit code {child.exitcode})") from None
            finally:
                reader.close()
            child.join()
            if outcome[0] == "error":
                raise outcome[1]
            return outcome[1]

        return wrapper

    return decorate(fn) if fn is not None else decorate


def _logged(func, seconds):
    def call(*args, **kwargs):
        _log(event="call", function=func.__name__, duration=seconds, pid=os.getpid())
        return func(*args, **kwargs)

    return call
