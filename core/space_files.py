"""The files a Hugging Face Space reads, generated from the project's own sources of truth:

- the README's YAML front matter (the Space card: sdk, sdk_version, app_file, hardware, models...) from
  `spaces_config.yaml`;
- `requirements.txt` (what the Space pip-installs) from `pyproject.toml`'s dependencies. Gradio is left out: the
  Space installs the `sdk_version` the card names.

`python -m core.space_files` rewrites both; `python -m core.space_files --check` fails if either is stale (the
tests run the check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
CARD_KEYS = (
    "title",
    "emoji",
    "colorFrom",
    "colorTo",
    "sdk",
    "sdk_version",
    "app_file",
    "python_version",
    "suggested_hardware",
    "short_description",
    "license",
)
REQUIREMENTS_HEADER = (
    "# Generated from pyproject.toml by `python -m core.space_files`; do not edit by hand.\n"
    "# Hugging Face Spaces install these; gradio comes from the README card's sdk_version.\n"
)


def card(config: dict[str, Any]) -> dict[str, Any]:
    """The Space card's fields: the deployment settings, the models the Space uses (curated checkpoints,
    companions and VAEs, for the Hub to link), and what to download while the Space is built."""
    fields = {key: config[key] for key in CARD_KEYS if key in config}
    models = [m["id"] for m in config.get("models", []) if "/" in m["id"]]
    models += [spec["id"] for spec in (config.get("companions") or {}).values()]
    models += list(config.get("vaes", []))
    fields["models"] = list(dict.fromkeys(models))
    if config.get("preload_from_hub"):
        fields["preload_from_hub"] = list(config["preload_from_hub"])
    return fields


def front_matter(config: dict[str, Any]) -> str:
    body = yaml.safe_dump(card(config), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{body}---\n"


def with_front_matter(readme: str, config: dict[str, Any]) -> str:
    """`readme` with its front matter replaced by (or prefixed with) the one generated from `config`."""
    if readme.startswith("---\n"):
        end = readme.index("\n---\n", 4) + len("\n---\n")
        readme = readme[end:].lstrip("\n")
    return front_matter(config) + "\n" + readme


def requirements(pyproject: dict[str, Any]) -> str:
    lines = [dep for dep in pyproject["project"]["dependencies"] if Requirement(dep).name.lower() != "gradio"]
    return REQUIREMENTS_HEADER + "\n".join(lines) + "\n"


def _read_pyproject(root: Path) -> dict[str, Any]:
    if tomllib is None:
        raise SystemExit("Generating the Space files needs Python 3.11+ (tomllib).")
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


def generated(root: Path = ROOT) -> dict[Path, str]:
    """Each generated file's path and the content it should have."""
    config = yaml.safe_load((root / "spaces_config.yaml").read_text(encoding="utf-8"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    return {
        root / "README.md": with_front_matter(readme, config),
        root / "requirements.txt": requirements(_read_pyproject(root)),
    }


def stale_files(root: Path = ROOT) -> list[str]:
    """The generated files whose content on disk differs from what they should hold."""
    return [
        path.name
        for path, content in generated(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.space_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    stale = stale_files()
    if args.check:
        if stale:
            print(f"Out of date: {', '.join(stale)}. Run `python -m core.space_files`.", file=sys.stderr)
        return 1 if stale else 0
    for path, content in generated().items():
        if path.name in stale:
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
