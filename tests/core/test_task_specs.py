"""Tasks are specs: each task's module in core.tasks says everything about it, and neither the engine outside that
package nor the page branches on a task's name (a branch there is a second place to edit for every new pipeline)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.errors import InvalidRequest
from core.generation import Limits
from core.tasks import COMPANION_PIPELINES, TASKS, TaskSpec, tasks_table

CORE = Path(__file__).resolve().parents[2] / "core"


def _string_literals(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(set(), *(_string_literals(e) for e in node.elts))
    return set()


def task_name_branches(path: Path, root: Path = CORE.parent) -> list[str]:
    """Comparisons of anything with a task's name (`task == "inpaint"`, `name in ("img2img", ...)`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            names = set().union(*(_string_literals(x) for x in (node.left, *node.comparators))) & set(TASKS)
            if names:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_neither_the_engine_nor_the_page_branches_on_a_task_name():
    # core/metadata_formats.py translates other tools' own labels ("img2img" in InvokeAI's metadata, ComfyUI's
    # graphs) into task names: a table of their formats, not the engine choosing what to run.
    files = [
        p for p in CORE.rglob("*.py") if "tasks" not in p.relative_to(CORE).parts and p.name != "metadata_formats.py"
    ]
    files += [*(CORE.parent / "ui").glob("*.py"), CORE.parent / "app.py"]
    assert len(files) > 40
    branches = [line for path in files for line in task_name_branches(path)]
    assert branches == [], "move these into the task's spec in core/tasks:\n" + "\n".join(branches)


def test_the_check_sees_a_branch(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('if request.task in ("img2img", "other"):\n    pass\nif kind == "auto":\n    pass\n')
    assert [line.split(": ", 1)[1] for line in task_name_branches(probe, tmp_path)] == [
        "request.task in ('img2img', 'other')"
    ]


def test_every_task_is_a_whole_spec_in_its_own_module():
    assert list(TASKS)[:3] == ["text2img", "img2img", "inpaint"], "ordered by SPEC.order: the tab order"
    orders = [spec.order for spec in TASKS.values()]
    assert len(set(orders)) == len(orders)
    for name, spec in TASKS.items():
        assert isinstance(spec, TaskSpec) and spec.name == name
        assert type(spec).__module__ == f"core.tasks.{name}", "one module per task, named after it"
        assert spec.label and spec.kind in ("auto", "feature", "companion", "animate", "module", "signature")
        assert set(spec.companion_pipelines) <= set(spec.companions)
        if spec.kind == "auto":
            assert spec.auto_class is not None and spec.mapping is not None
        else:
            assert spec.pipeline_class, f"{name} names the diffusers class that runs it"
    assert set(COMPANION_PIPELINES) == {k for s in TASKS.values() for k in s.companion_pipelines}


def test_every_companion_a_task_needs_has_an_offline_twin():
    from core.demo.companions import COMPANIONS, DEMO_CHOICES

    kinds = {kind for spec in TASKS.values() for kind in spec.companions}
    assert {"refiner", "depth", "upscale_x4", "motion_adapter"} <= kinds
    assert kinds <= set(COMPANIONS) | set(DEMO_CHOICES), kinds - set(COMPANIONS)
    for kind, twins in DEMO_CHOICES.items():  # a slot that offers several twins: each is one
        assert {twin.removeprefix("demo-").replace("-", "_") for twin in twins} <= set(COMPANIONS), kind


def test_the_readme_table_is_the_one_the_specs_make():
    readme = (CORE.parent / "README.md").read_text(encoding="utf-8")
    table = tasks_table()
    assert all(f"`/{name}`" in table for name in TASKS)
    assert table in readme, "README: paste the output of `python -m core.tasks` over the task table"


def test_each_range_refuses_one_step_past_where_the_page_stops():
    """Validation reads each param's range: both ends of the page's control pass, one step past them is refused
    with the allowed range in the message; a choice outside the list names the list; a checkbox takes booleans."""
    limits = Limits()
    for spec in TASKS.values():
        for p in spec.params:
            if p.kind == "choice":
                for choice in p.choices:
                    p.check(choice, limits)
                with pytest.raises(InvalidRequest, match=f"{p.name} must be one of {', '.join(p.choices)}"):
                    p.check("nonsense", limits)
            elif p.kind == "check":  # a checkbox: true or false, nothing that merely looks true
                p.check(True, limits)
                p.check(False, limits)
                for nonsense in (1, "yes", None):
                    with pytest.raises(InvalidRequest, match=f"{p.name} must be true or false"):
                        p.check(nonsense, limits)
            elif p.checked:
                low, high = p.page_range(limits)
                p.check(low, limits)
                p.check(high, limits)
                step = p.step or 1
                for outside in (low - step, high + step):
                    with pytest.raises(InvalidRequest, match=f"{p.name} must be .*, got"):
                        p.check(outside, limits)
                if p.whole:
                    with pytest.raises(InvalidRequest, match="whole number"):
                        p.check(low + 0.5, limits)
