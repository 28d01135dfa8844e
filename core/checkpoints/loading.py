"""Loading weights: a checkpoint's pipeline, a VAE, a motion adapter, each with errors that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers
import torch
from diffusers import DiffusionPipeline

from core import checkpoints, devices
from core.checkpoints import DEFAULT_VARIANT, CheckpointFiles, compat, hub, single_file
from core.errors import InvalidRequest, LoadError, StudioError

if TYPE_CHECKING:
    from core.settings import StudioOptions

VAE_CLASSES = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "ConsistencyDecoderVAE")


def choose_variant(files: CheckpointFiles, variant: str, dtype: torch.dtype) -> str:
    """The variant to load: the one asked for if the checkpoint has it; for `auto`, fp16 files for a
    half-precision dtype when present, else the default files."""
    if variant not in checkpoints.VARIANT_CHOICES and variant not in files.variants:
        raise InvalidRequest(f"Unknown variant {variant!r}; choose one of {', '.join(checkpoints.VARIANT_CHOICES)}.")
    if variant == "auto":
        if dtype in (torch.float16, torch.bfloat16) and "fp16" in files.variants:
            return "fp16"  # half the bytes to read, and the dtype it is cast to loses nothing more
        return DEFAULT_VARIANT if DEFAULT_VARIANT in files.variants or not files.variants else files.variants[0]
    if variant not in files.variants:
        raise LoadError(
            f"{files.source!r} has no {variant!r} variant. It has: {', '.join(files.variants) or 'no weights'}. "
            "Pick one of those, or `auto`."
        )
    return variant


def load_pipeline(
    files: CheckpointFiles,
    variant: str,
    dtype: torch.dtype,
    device: torch.device,
    options: StudioOptions,
    reuse: dict[str, torch.nn.Module] | None = None,
) -> DiffusionPipeline:
    """The checkpoint's pipeline (class from model_index.json) on `device`; safetensors only unless allowed.

    Components in `reuse` (identical ones already in memory) are taken as they are instead of being loaded.
    """
    use_safetensors = True
    if not files.has_safetensors and files.has_pickle:
        if not (options.allow_unsafe and not files.is_hub and not options.public):
            raise LoadError(
                f"{files.source!r} has only pickle (.bin/.ckpt) weights, which can run arbitrary code when "
                "loaded. Use a safetensors copy of it, or, for a local folder you trust, start the app with "
                "--allow-unsafe."
            )
        use_safetensors = False
    location = str(files.path)  # a Hub checkpoint's variant files are in its snapshot folder by now
    # Components the checkpoint declares empty ([null, null], e.g. SD3 saved without its T5 encoder) must be
    # passed as None, or diffusers refuses a pipeline whose signature lists them.
    absent = {
        name: None
        for name, spec in files.model_index.items()
        if isinstance(spec, list) and spec and spec[0] is None and name not in (reuse or {})
    }
    try:
        if files.single_file is not None:
            base = single_file.load(files, dtype, reuse)
        else:
            kwargs = dict(
                dtype=dtype,
                variant=None if variant == DEFAULT_VARIANT else variant,
                use_safetensors=use_safetensors,
                local_files_only=options.offline,
            )
            _alias_moved_libraries(files)
            replaced = compat.replaced_components(
                files.model_index, files.pipeline_class, location, dtype=dtype, local_files_only=options.offline
            )
            replaced = {k: v for k, v in replaced.items() if k not in (reuse or {})}
            base = DiffusionPipeline.from_pretrained(location, **kwargs, **absent, **replaced, **(reuse or {}))
        base = base.to(device)
        compat.mend(base)
        unet = getattr(base, "unet", None)
        if unet is not None and devices.prefers_channels_last(device):
            unet.to(memory_format=torch.channels_last)
        return base
    except torch.OutOfMemoryError:
        pass  # raised below, outside the except block: its traceback's frames hold the half-loaded modules
    except StudioError:
        raise
    except Exception as e:  # any library failure here means "this checkpoint can't be loaded"
        raise LoadError(
            f"Loading {files.source!r} ({variant} weights) failed: {type(e).__name__}: {e}. "
            "If a weight file is damaged, delete it (or its cache entry) and load again."
        ) from e
    raise LoadError(
        f"Not enough {device.type} memory to load {files.source!r} in {devices.dtype_name(dtype)}. "
        "Try a half-precision dtype, the fp16 variant, or a smaller checkpoint."
    )


# Pipeline modules that diffusers has moved under `pipelines.deprecated` while published checkpoints still name
# them in model_index.json (Fantasy-Studio/Paint-by-Example: `["paint_by_example", "PaintByExampleImageEncoder"]`).
# diffusers 0.42 looks such a name up as an attribute of `diffusers.pipelines` (where the module used to be), and
# fails otherwise ("paint_by_example is not one of the libraries..."; passing the component in fails in its class
# check too). So the module is made reachable under its old name again: diffusers' own module, nothing else.
# Wuerstchen's and Stable Cascade's repos name `wuerstchen` for their Paella VQ-GAN (and Wuerstchen's UNets).
MOVED_LIBRARIES = {
    "paint_by_example": "diffusers.pipelines.deprecated.paint_by_example",
    "wuerstchen": "diffusers.pipelines.deprecated.wuerstchen",
    # microsoft/vq-diffusion-ithq's learned embeddings, kakaobrain/karlo-v1-alpha's text projection
    "vq_diffusion": "diffusers.pipelines.deprecated.vq_diffusion",
    "unclip": "diffusers.pipelines.deprecated.unclip",
    "alt_diffusion": "diffusers.pipelines.deprecated.alt_diffusion",  # BAAI/AltDiffusion's text encoder
    "versatile_diffusion": "diffusers.pipelines.deprecated.versatile_diffusion",  # its text UNet
    "blip_diffusion": "diffusers.pipelines.deprecated.blip_diffusion",  # Salesforce/blipdiffusion's encoders
    "audio_diffusion": "diffusers.pipelines.deprecated.audio_diffusion",  # teticio/audio-diffusion-*'s Mel
    # google/music-spectrogram-diffusion's encoders and decoder (diffusers issue 6463)
    "spectrogram_diffusion": "diffusers.pipelines.deprecated.spectrogram_diffusion",
}


def moved_libraries(files: CheckpointFiles) -> dict[str, str]:
    """The libraries the checkpoint's model_index.json names by a name diffusers has since moved: {name: module}."""
    named = {spec[0] for spec in files.model_index.values() if isinstance(spec, list) and spec and spec[0]}
    return {library: MOVED_LIBRARIES[library] for library in sorted(named) if library in MOVED_LIBRARIES}


def _alias_moved_libraries(files: CheckpointFiles) -> None:
    import importlib

    from diffusers import pipelines

    for library, module in moved_libraries(files).items():
        if not hasattr(pipelines, library):
            setattr(pipelines, library, importlib.import_module(module))


def find_vae(source: str, options: StudioOptions) -> tuple[str, str | None]:
    """Where the VAE at `source` is: (location, subfolder), for a folder or Hub repo with or without `vae/`."""
    path = Path(source).expanduser()
    if path.is_dir():
        for folder, subfolder in ((path, None), (path / "vae", "vae")):
            if (folder / "config.json").is_file():
                return str(path), subfolder
        raise LoadError(f"{source!r} holds no VAE: there is no config.json in it or in a `vae` subfolder.")
    if not checkpoints.looks_like_repo_id(source):
        raise LoadError(f"{source!r} is neither a folder nor a Hub id (org/name); give the VAE's folder or id.")
    # `demo` is a checkpoint, not a VAE: the advice offline is the checkpoint's own VAE or a local one.
    instead = "keep `default` (the checkpoint's own VAE), or give a local VAE folder"
    _folder, names = checkpoints.hub_file_names(source, offline=options.offline, instead=instead)
    if "config.json" in names:
        return source, None
    if "vae/config.json" in names:
        return source, "vae"
    raise LoadError(f"The Hub repo {source!r} holds no VAE (no config.json at its root or in `vae/`).")


def load_vae(
    location: str, subfolder: str | None, *, variant: str, dtype: torch.dtype, options: StudioOptions, label: str
) -> torch.nn.Module:
    """A VAE of any diffusers VAE class, in `dtype`, preferring the checkpoint's variant files when it has them."""
    try:
        config = diffusers.AutoencoderKL.load_config(location, subfolder=subfolder, local_files_only=options.offline)
        class_name = config.get("_class_name", "AutoencoderKL")
        if class_name not in VAE_CLASSES:
            raise LoadError(f"{label!r} is a {class_name}, not a VAE ({', '.join(VAE_CLASSES)}).")
        cls = getattr(diffusers, class_name)
        common = dict(subfolder=subfolder, dtype=dtype, use_safetensors=True, local_files_only=options.offline)
        if variant != DEFAULT_VARIANT:
            try:
                return cls.from_pretrained(location, variant=variant, **common)
            except OSError as e:
                # Only "no file for this variant" falls back (the default weights, cast to dtype, are the same VAE);
                # a damaged variant file or a bad config is an error to report, not to paper over.
                if f".{variant}." not in str(e):
                    raise
        return cls.from_pretrained(location, **common)
    except (StudioError, torch.OutOfMemoryError):
        raise  # out of memory: the caller frees what the attempt held and says what to do
    except Exception as e:  # any library failure here means "this VAE can't be loaded"
        raise LoadError(f"Loading the VAE {label!r} failed: {type(e).__name__}: {e}") from e


def _load_module(kind: str, cls: type, what: str, source: str, dtype, device, options: StudioOptions, hint: str = ""):
    """One model of class `cls` (a module companion `kind`, in words `what`) from a Hub id, a folder, or its
    offline twin `demo-<kind with dashes>`."""
    location = source
    if source == f"demo-{kind.replace('_', '-')}":
        from core.demo.companions import companion_path

        location = str(companion_path(kind, options.cache_dir))
    elif not Path(source).expanduser().is_dir() and not checkpoints.looks_like_repo_id(source):
        raise LoadError(f"{source!r} is neither a folder nor a Hub id (org/name) of a {what}.")
    try:
        model = cls.from_pretrained(location, dtype=dtype, use_safetensors=True, local_files_only=options.offline)
        return model.to(device).eval()
    except Exception as e:  # any library failure here means "this model can't be loaded"
        raise LoadError(f"Loading the {what} {source!r} failed: {type(e).__name__}: {e}.{hint}") from e


def load_motion_adapter(source: str, dtype: torch.dtype, device: torch.device, options: StudioOptions):
    """A `MotionAdapter` (AnimateDiff) from a Hub id, a folder, or `demo-motion-adapter`."""
    return _load_module("motion_adapter", diffusers.MotionAdapter, "motion adapter", source, dtype, device, options)


def load_tiny_vae(source: str, dtype: torch.dtype, device: torch.device, options: StudioOptions):
    """An `AutoencoderTiny` (TAESD, TAESDXL, ...) from a Hub id, a folder, or `demo-tiny-vae`."""
    hint = " It takes an AutoencoderTiny (madebyollin/taesd for SD 1/2, madebyollin/taesdxl for SDXL)."
    return _load_module("tiny_vae", diffusers.AutoencoderTiny, "tiny VAE", source, dtype, device, options, hint)


def load_depth_estimator(
    files: CheckpointFiles, dtype: torch.dtype, device: torch.device, *, offline: bool = False
) -> tuple[Any, Any]:
    """The DPT depth estimator and its image processor of a depth-to-image checkpoint (its `depth_estimator` and
    `feature_extractor` folders), without the rest of it: what ControlNet's depth preprocessor runs."""
    import huggingface_hub
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    location = str(files.path)
    if files.is_hub:  # these two folders only, not the depth checkpoint's UNet
        location = hub._hub_call(
            files.source,
            lambda: huggingface_hub.snapshot_download(
                files.source,
                allow_patterns=["depth_estimator/*", "feature_extractor/*"],
                local_files_only=checkpoints.hub_offline(offline),
            ),
        )
    try:
        estimator = DPTForDepthEstimation.from_pretrained(
            location, subfolder="depth_estimator", dtype=dtype, use_safetensors=True
        )
        processor = DPTImageProcessor.from_pretrained(location, subfolder="feature_extractor")
    except Exception as e:  # any library failure here means "no depth estimator from this checkpoint"
        raise LoadError(f"Loading the depth estimator of {files.source!r} failed: {type(e).__name__}: {e}") from e
    return estimator.to(device).eval(), processor
