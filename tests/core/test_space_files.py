"""The Space's files agree with their sources: the README card with spaces_config.yaml, requirements.txt with
pyproject.toml, and the card's versions with what the project declares."""

from __future__ import annotations

import shutil

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from core import space_files
from core.settings import read_config

ROOT = space_files.ROOT


def _card() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "Spaces read the card from the README's first lines"
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


def test_committed_space_files_are_up_to_date():
    assert space_files.stale_files() == [], "run `python -m core.space_files` and commit the result"


def test_the_card_says_what_spaces_need_and_matches_the_project():
    card, config = _card(), read_config()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "python_version", "suggested_hardware"):
        assert card[key] == config[key], key
    assert card["sdk"] == "gradio" and (ROOT / card["app_file"]).is_file()
    gradio = next(Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("gradio"))
    assert gradio.specifier.contains(card["sdk_version"]), "the Space's gradio must satisfy pyproject"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(card["python_version"] + ".0")
    curated = [m["id"] for m in config["models"] if m["id"] != "demo"]
    assert set(curated) <= set(card["models"]) and config["default_model"] in card["models"]
    assert len(card["short_description"]) <= 60  # the Hub's limit
    repo, files = card["preload_from_hub"][0].split(" ")
    assert repo == config["default_model"] and "unet/diffusion_pytorch_model.fp16.safetensors" in files.split(",")


def test_requirements_are_the_dependencies_without_gradio():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    wanted = [d for d in pyproject["project"]["dependencies"] if Requirement(d).name != "gradio"]
    assert lines == wanted and all(Requirement(line) for line in lines)


def test_a_changed_setting_makes_the_card_stale_until_regenerated(tmp_path):
    for name in ("README.md", "spaces_config.yaml", "pyproject.toml", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    config = (tmp_path / "spaces_config.yaml").read_text(encoding="utf-8")
    (tmp_path / "spaces_config.yaml").write_text(config.replace("zero-a10g", "t4-small"), encoding="utf-8")
    assert space_files.stale_files(tmp_path) == ["README.md"]
    for path, content in space_files.generated(tmp_path).items():
        path.write_text(content, encoding="utf-8")
    assert space_files.stale_files(tmp_path) == []
    assert "suggested_hardware: t4-small" in (tmp_path / "README.md").read_text(encoding="utf-8")
    # The README's own text is kept, once, below the card.
    assert (tmp_path / "README.md").read_text(encoding="utf-8").count("# 🧨 Diffusion Studio") == 1


def test_an_installed_copy_has_every_package():
    """`pip install .` (not -e) ships only the packages pyproject lists: a new subpackage left out imports fine in
    this checkout and fails in the installed app."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("assets", "core", "ui")
        for p in (ROOT / top).rglob("*.py")
    }
    assert found >= {"assets", "core", "ui", "core.tasks"} and listed == found, found ^ listed


def test_the_wheel_carries_the_pages_style_and_script(tmp_path):
    """A wheel holds what pyproject names: the page's assets are package data, or the installed app has no styles
    and no page script (Ctrl+Enter, the phone's folded bar)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("diffusion_studio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"app.py", "assets/style.css", "assets/app.js", "core/tasks/__main__.py", "ui/layout.py"} <= names
