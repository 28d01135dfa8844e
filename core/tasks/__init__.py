"""The tasks the studio serves: one module per task, each with a `SPEC` (a core.tasks.base.TaskSpec).

A new task is a new module here (plus its tiny twin and its tests): this package finds every module with a `SPEC`
and orders them by `SPEC.order`, the order of the tabs and endpoints.
"""

from __future__ import annotations

import importlib
import pkgutil

from core.errors import InvalidRequest
from core.tasks.base import Serving, TaskSpec, family_of

# Kept for the name every caller knows a task by.
Task = TaskSpec


def _discover() -> dict[str, TaskSpec]:
    specs = []
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):  # __main__ prints the README table
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if isinstance(spec, TaskSpec):
            specs.append(spec)
    return {spec.name: spec for spec in sorted(specs, key=lambda s: s.order)}


TASKS: dict[str, TaskSpec] = _discover()
BASE_TASKS = tuple(name for name, t in TASKS.items() if t.kind == "auto")
# The pipeline class each companion checkpoint loads as, to check a companion is what its task needs.
COMPANION_PIPELINES = {kind: cls for t in TASKS.values() for kind, cls in t.companion_pipelines.items()}


def get_task(name: str) -> TaskSpec:
    """The task called `name`, or a clear error listing the tasks there are."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise InvalidRequest(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.") from None


def view_labels(views: list[str]) -> list[str]:
    """Views of a pool (task names, and option views such as "sag") in a user's words, in tab order."""
    labels = []
    for spec in TASKS.values():
        if spec.name in views:
            labels.append(spec.label)
        labels += [f"{spec.label} with {words}" for view, words in spec.option_views.items() if view in views]
    known = set(TASKS) | {view for spec in TASKS.values() for view in spec.option_views}
    return labels + [view for view in views if view not in known]


def tasks_table() -> str:
    """The README's task table, made from the specs (the README holds a copy; a test keeps the two equal)."""
    header = [
        "| tab / endpoint | diffusers pipeline | what it shares with the loaded checkpoint |",
        "| --- | --- | --- |",
    ]
    return "\n".join(header + [row for spec in TASKS.values() for row in spec.table_rows()])


def views_over(base_class: str) -> dict[str, type]:
    """Every view a main checkpoint of `base_class` serves, with its class: the AutoPipeline tasks first, then the
    options and feature tasks; for a class no spec serves, the signature-built one."""
    family = family_of(base_class)
    views: dict[str, type] = {}
    for task in TASKS.values():
        if task.kind != "signature":
            views.update(task.views_over(base_class, family))
    # No spec serves the class's own call (views of option names, e.g. "sag", are never beside it): its signature's
    if all(name in TASKS and TASKS[name].beside_signature_tab for name in views):
        for task in TASKS.values():
            if task.kind == "signature":
                views.update(task.views_over(base_class, family))
    return {name: views[name] for name in sorted(views, key=lambda n: n not in BASE_TASKS)}


__all__ = ["BASE_TASKS", "COMPANION_PIPELINES", "TASKS", "Serving", "Task", "TaskSpec", "family_of", "get_task"]
