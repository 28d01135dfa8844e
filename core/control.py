"""Control modules and their condition maps: a ControlNet or a T2I-Adapter steers the loaded checkpoint's UNet
with a map (edges, depth, a scribble) made from an image by a preprocessor.

A control module is a companion module, not a checkpoint: it joins the pool and every view built with
`from_pipe(base, controlnet=...)` (or `adapter=...`) uses the pool's own modules beside it, with no copy of them.
Two slots (`controlnet`, `controlnet_2`) hold what a run may combine (diffusers' multi-ControlNet).

Preprocessors: `canny` is OpenCV's Canny (`opencv-python-headless`, what diffusers' ControlNet guide uses), `depth`
the DPT estimator of the depth-to-image checkpoint (already a companion; its `depth_estimator` subfolder), and
`scribble`/`invert` turn a drawing into the white-on-black lines those ControlNets were trained on. The learned
annotators (OpenPose, HED soft edges, learned line art, MLSD, segmentation) live in `controlnet_aux`, which needs
torchvision and timm: torchvision can't be installed beside this project's CPU torch, so a map made elsewhere is
uploaded and used as is (preprocessor `none`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from core.errors import InvalidRequest, LoadError

if TYPE_CHECKING:
    from core.settings import StudioOptions

SLOTS = ("controlnet", "controlnet_2")
PREPROCESSORS = ("none", "canny", "depth", "scribble", "invert")
# The diffusers class of each control module kind, by the `_class_name` its config.json declares.
MODULE_CLASSES = {
    "ControlNetModel": "controlnet_model",
    "T2IAdapter": "t2i_adapter",
    "ControlNetXSAdapter": "controlnet_xs",
}


@dataclass
class ControlModel:
    """A loaded control module: where it came from (`source` as typed, `location` the folder or id loaded) and
    what it is (`kind`: controlnet_model | t2i_adapter)."""

    source: str
    location: str
    module: torch.nn.Module
    kind: str
    # ControlNet-XS: the UNet fused with the adapter (a copy of the UNet's weights, kept) and weak references to
    # what it was built from, as for AnimateDiff's motion UNet.
    fused: torch.nn.Module | None = None
    fused_from: Any = None

    @property
    def class_name(self) -> str:
        return type(self.module).__name__

    def fused_unet(self, unet: torch.nn.Module) -> torch.nn.Module:
        """ControlNet-XS's `UNetControlNetXSModel` over `unet` as it is now, built once and rebuilt when the UNet
        changed (another checkpoint)."""
        import weakref

        from diffusers import UNetControlNetXSModel

        if self.fused is None or self.fused_from is None or self.fused_from() is not unet:
            self.fused = None  # free the old copy before making the new one
            try:
                fused = UNetControlNetXSModel.from_unet(unet, self.module)
            except (RuntimeError, ValueError) as e:  # the adapter's blocks don't match this UNet's
                raise InvalidRequest(
                    f"The ControlNet-XS {self.source!r} does not fit the loaded checkpoint's UNet "
                    f"({e.__class__.__name__}); load one made for this checkpoint."
                ) from e
            self.fused = fused.to(device=unet.device, dtype=unet.dtype)
            self.fused_from = weakref.ref(unet)
        return self.fused

    def check_fits(self, unet: Any) -> None:
        """Raise InvalidRequest when this module was made for another UNet (SD 1.5's on SDXL, say): diffusers would
        fail inside the run with a tensor shape error."""
        config, unet_config = self.module.config, unet.config
        if self.kind == "controlnet_xs":
            return  # fusing it with the UNet tells (fused_unet)
        if self.kind == "controlnet_model":
            wrong = (
                config.cross_attention_dim != unet_config.cross_attention_dim
                or tuple(config.block_out_channels) != tuple(unet_config.block_out_channels)
                or config.addition_embed_type != unet_config.addition_embed_type
            )
        else:
            channels = list(config.channels)  # one per UNet level it feeds
            wrong = channels != list(unet_config.block_out_channels)[: len(channels)]
        if wrong:
            raise InvalidRequest(
                f"The control module {self.source!r} was made for another model family than the loaded checkpoint "
                "(its layers don't match this UNet's); load one made for this checkpoint (e.g. an SDXL ControlNet "
                "for an SDXL checkpoint)."
            )


def location_of(source: str, options: StudioOptions) -> str:
    """The folder or Hub id to load a control module from: a demo twin is written on first use."""
    if source.startswith("demo-"):
        from core.demo.companions import CONTROL_TWINS, companion_path

        if source not in CONTROL_TWINS:
            raise LoadError(f"{source!r} is not a control module twin; choose one of {', '.join(CONTROL_TWINS)}.")
        return str(companion_path(source.removeprefix("demo-").replace("-", "_"), options.cache_dir))
    return source


def load_control_model(source: str, dtype: torch.dtype, device: torch.device, options: StudioOptions) -> ControlModel:
    """A ControlNet or a T2I-Adapter from a folder, a Hub id or a demo twin, as its config.json says it is."""
    import diffusers
    from huggingface_hub import hf_hub_download

    from core.checkpoints import looks_like_repo_id

    location = location_of(source.strip(), options)
    folder = Path(location).expanduser()
    try:
        if folder.is_dir():
            config_file = folder / "config.json"
        elif looks_like_repo_id(location):
            config_file = Path(hf_hub_download(location, "config.json", local_files_only=options.offline))
        else:
            raise LoadError(f"{source!r} is neither a folder nor a Hub id (org/name) of a ControlNet or T2I-Adapter.")
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except LoadError:
        raise
    except Exception as e:  # no config, no network, not JSON: all mean "not a control module we can read"
        raise LoadError(
            f"Could not read {source!r}'s config.json ({type(e).__name__}: {e}); give the folder or Hub id of a "
            "diffusers ControlNet or T2I-Adapter."
        ) from e
    kind = MODULE_CLASSES.get(class_name)
    if kind is None:
        raise LoadError(
            f"{source!r} is a {class_name or 'model without a _class_name'}; a control slot takes a ControlNetModel "
            "or a T2IAdapter."
        )
    try:
        module = getattr(diffusers, class_name).from_pretrained(
            location, dtype=dtype, use_safetensors=True, local_files_only=options.offline
        )
    except Exception as e:  # any library failure here means "this module can't be loaded"
        raise LoadError(f"Loading the control module {source!r} failed: {type(e).__name__}: {e}") from e
    return ControlModel(source.strip(), location, module.to(device).eval(), kind)


# -- preprocessors -------------------------------------------------------------------------------------------


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges, white on black, as the canny ControlNets were trained on."""
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("L")), int(low), int(high))
    return Image.fromarray(edges).convert("RGB")


def scribble(image: Image.Image) -> Image.Image:
    """A drawing as white lines on black: dark strokes on a light page are turned round, light on dark kept."""
    grey = np.asarray(image.convert("L"))
    lines = grey < 128 if grey.mean() > 127 else grey >= 128
    return Image.fromarray(np.where(lines, 255, 0).astype(np.uint8)).convert("RGB")


def invert(image: Image.Image) -> Image.Image:
    """Black lines on white (a line drawing) as the white-on-black lines line-art ControlNets take."""
    return Image.fromarray(255 - np.asarray(image.convert("RGB")))


def depth(image: Image.Image, estimator: Any, processor: Any, device: torch.device) -> Image.Image:
    """The DPT estimator's depth, white = near, at the image's size."""
    from core.tasks.depth import depth_preview

    pixels = processor(images=image.convert("RGB"), return_tensors="pt").pixel_values
    parameter = next(estimator.parameters())
    with torch.no_grad():
        predicted = estimator(pixels.to(device=device, dtype=parameter.dtype)).predicted_depth
    return depth_preview(predicted).convert("RGB").resize(image.size, Image.Resampling.BICUBIC)
