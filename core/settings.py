"""The app's settings: one typed object, read once by the entry point from flags, environment and the
deployment file (`spaces_config.yaml`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.checkpoints import VARIANT_CHOICES
from core.devices import DEVICE_CHOICES, DTYPE_CHOICES
from core.generation import Limits

CONFIG_FILE = Path(__file__).resolve().parent.parent / "spaces_config.yaml"


@dataclass(frozen=True)
class StudioOptions:
    """How the engine runs; built once by the entry point from flags and environment."""

    device: str = "auto"
    outputs_dir: Path | None = None
    outputs_max_bytes: int | None = None  # public mode: the oldest saved files go first beyond this
    outputs_max_session_bytes: int | None = None  # public mode: each visitor's own share of that
    cache_dir: Path | None = None  # where demo checkpoints are written; None: $DIFFUSION_STUDIO_CACHE or ~/.cache
    offline: bool = False
    allow_unsafe: bool = False  # allow pickle (.bin) weights from local folders
    public: bool = False
    limits: Limits = field(default_factory=Limits)
    allowed_models: tuple[str, ...] | None = None  # public mode: only these sources load
    allowed_vaes: tuple[str, ...] | None = None
    depth_source: str = "stabilityai/stable-diffusion-2-depth"  # its depth_estimator makes ControlNet depth maps


@dataclass(frozen=True)
class CuratedModel:
    id: str
    label: str


@dataclass(frozen=True)
class Settings:
    """Everything `app.py` needs to build the Studio and launch the UI."""

    model: str
    variant: str = "auto"
    dtype: str = "auto"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    admin: tuple[str, str] | None = None  # public mode: the owner's login for changing what visitors share
    public: bool = False
    allow_unsafe: bool = False
    outputs: Path = Path("outputs")
    offline: bool = False
    open_browser: bool = False
    on_spaces: bool = False
    verbose: bool = False  # the libraries' own log lines and warnings too
    curated_models: tuple[CuratedModel, ...] = ()
    curated_vaes: tuple[str, ...] = ()
    curated_companions: dict[str, str] = field(default_factory=dict)  # companion kind -> Hub id
    limits: Limits = field(default_factory=Limits)
    max_upload_bytes: int | None = None
    max_outputs_bytes: int | None = None  # public mode: cap of the outputs folder
    max_visitor_outputs_bytes: int | None = None  # public mode: each visitor's share of it
    queue_size: int | None = None
    batch_visitors: int = 4  # text-to-image requests of up to this many visitors arriving together share one call

    @property
    def model_choices(self) -> list[str]:
        return [m.id for m in self.curated_models]

    def _demo_companions(self) -> tuple[str, ...]:
        if "demo" not in self.model_choices:
            return ()
        from core.demo.companions import demo_choices

        return tuple(twin for kind in self.curated_companions for twin in demo_choices(kind))

    def studio_options(self) -> StudioOptions:
        """The engine's part of the settings."""
        return StudioOptions(
            device=self.device,
            outputs_dir=self.outputs,
            outputs_max_bytes=self.max_outputs_bytes,
            outputs_max_session_bytes=self.max_visitor_outputs_bytes,
            offline=self.offline,
            allow_unsafe=self.allow_unsafe,
            public=self.public,
            limits=self.limits,
            allowed_models=(*self.model_choices, *self.curated_companions.values(), *self._demo_companions())
            if self.public
            else None,
            allowed_vaes=self.curated_vaes if self.public else None,
        )


def read_config(path: Path = CONFIG_FILE) -> dict[str, Any]:
    """The deployment file as a dict; a clear error if it is not valid YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"Could not read {path}: {e}") from e


def build_parser(default_model: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Diffusion Studio: run diffusers pipelines in the browser.")
    parser.add_argument("--model", default=None, help=f"Hub id, local folder or `demo` (default: {default_model})")
    parser.add_argument("--variant", default="auto", choices=VARIANT_CHOICES)
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; 0.0.0.0 on Spaces)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="make a temporary public link (turns on public mode)")
    parser.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login")
    parser.add_argument(
        "--admin",
        default=None,
        metavar="USER:PASS",
        help="public mode: the owner's login (the page's Owner panel) for changing the model, VAE, memory modes and "
        "adapters that every visitor shares (env STUDIO_ADMIN; without it they are fixed at start)",
    )
    parser.add_argument("--public", action="store_true", help="public mode: curated models, checker always on")
    parser.add_argument("--allow-unsafe", action="store_true", help="allow pickle weights from local folders")
    parser.add_argument("--outputs", default=None, help="folder for saved images (default ./outputs)")
    parser.add_argument("--offline", action="store_true", help="never contact the Hub; use the local cache only")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab (console command)")
    parser.add_argument(
        "--verbose", action="store_true", help="the libraries' own messages too (quiet by default: one ready line)"
    )
    parser.add_argument(
        "--queue-size", type=int, default=None, help="visitors who may wait; more are told to try again (public: 20)"
    )
    parser.add_argument(
        "--batch-visitors",
        type=int,
        default=4,
        metavar="N",
        help="text-to-image requests of up to N visitors that arrive together run as one call (1: one at a time)",
    )
    return parser


def from_args(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    open_browser_default: bool = False,
) -> Settings:
    """Settings from command-line flags, then environment (GRADIO_SERVER_*, SPACE_ID, HF_HUB_OFFLINE), then the
    deployment file's defaults."""
    env = os.environ if env is None else env
    config = read_config() if config is None else config
    default_model = config.get("default_model", "demo")
    args = build_parser(default_model).parse_args(argv)

    on_spaces = bool(env.get("SPACE_ID"))
    public = args.public or args.share or on_spaces
    auth = _user_and_password("--auth", args.auth)
    admin = _user_and_password("--admin", args.admin or env.get("STUDIO_ADMIN"))
    public_cfg = config.get("public", {}) or {}
    limits = Limits(**public_cfg.get("limits", {})) if public else Limits()
    max_upload_mb = public_cfg.get("max_upload_mb")
    curated = tuple(CuratedModel(m["id"], m.get("label", m["id"])) for m in config.get("models", []))
    return Settings(
        model=args.model or env.get("STUDIO_MODEL") or default_model,
        variant=args.variant,
        dtype=args.dtype,
        device=args.device,
        host=args.host or env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces else "127.0.0.1"),
        port=args.port or int(env.get("GRADIO_SERVER_PORT", 7860)),
        share=args.share,
        auth=auth,
        admin=admin,
        public=public,
        allow_unsafe=args.allow_unsafe,
        outputs=Path(args.outputs or env.get("STUDIO_OUTPUTS", "outputs")),
        offline=args.offline or env.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"),
        open_browser=open_browser_default and not args.no_browser and not on_spaces,
        on_spaces=on_spaces,
        verbose=args.verbose,
        curated_models=curated,
        curated_vaes=tuple(config.get("vaes", [])),
        curated_companions={kind: spec["id"] for kind, spec in (config.get("companions") or {}).items()},
        limits=limits,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024) if public and max_upload_mb else None,
        max_outputs_bytes=int(public_cfg["max_outputs_mb"] * 1024 * 1024)
        if public and public_cfg.get("max_outputs_mb")
        else None,
        max_visitor_outputs_bytes=int(public_cfg["max_visitor_outputs_mb"] * 1024 * 1024)
        if public and public_cfg.get("max_visitor_outputs_mb")
        else None,
        queue_size=args.queue_size or (public_cfg.get("queue_size") if public else None),
        batch_visitors=max(1, args.batch_visitors),
    )


def _user_and_password(flag: str, value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit(f"{flag} takes USER:PASS, e.g. {flag} alice:s3cret")
    return user, password
