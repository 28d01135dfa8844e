"""Live previews: a cheap picture of the latents during denoising, without running the VAE.

With a tiny VAE loaded (an `AutoencoderTiny`: TAESD for SD 1/2, TAESDXL for SDXL), a preview is that decoder's
picture of the latents, at the image's size: a real picture for a small part of a VAE decode's cost.

Without one, a linear map from the latent channels to RGB approximates what the VAE would decode, at the latents'
resolution (1/8 of the image). It costs one tiny matrix product per preview where a VAE decode costs about as much
as a denoising step. diffusers has no such helper (its cheap decoder, AutoencoderTiny, is a download away), so the
map is written here; the factors are the ones the Stable Diffusion web UIs use for SD 1.x/2.x and SDXL latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class TinyVae:
    """A loaded tiny VAE (the `tiny_vae` companion) and where it came from."""

    source: str
    vae: torch.nn.Module

    def fits(self, latents: torch.Tensor) -> bool:
        """Whether it reads these latents: (B, C, H, W) with its latent channels (not SD3's 16, Flux's packed)."""
        return latents.dim() == 4 and latents.shape[1] == self.vae.config.latent_channels

    @torch.no_grad()
    def preview(self, latents: torch.Tensor) -> list[Image.Image]:
        """One picture per latent of the batch. Pipelines hand their callbacks scaled latents, which TAESD decodes as
        they are (its scaling factor is 1: the pipelines' own decode divides by it)."""
        param = next(self.vae.parameters())
        images = self.vae.decode(latents.to(param.device, param.dtype) / self.vae.config.scaling_factor).sample
        pixels = ((images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round()
        return [Image.fromarray(p) for p in pixels.astype(np.uint8)]


# RGB contribution of each of the 4 latent channels (rows), and an offset; fitted against the real VAEs.
_FACTORS = {
    "sd": (
        [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
        [0.1084, -0.0175, -0.0011],
    ),
}


def latent_preview(
    latents: torch.Tensor, family: str | None = None, size: tuple[int, int] | None = None
) -> list[Image.Image]:
    """One RGB image per latent in the batch (B, C, H, W), at the latents' size; none for a layout it can't read.

    4-channel latents use the family's factors (SDXL's for `stable-diffusion-xl`, SD's otherwise); other latent
    spaces (SD3's 16 channels) show their first three channels, each stretched to its own range. Flux hands its
    latents packed as a sequence (B, H/2 * W/2, 4C): they are read back on a grid of the image's shape (`size`:
    width, height), one latent pixel of each 2x2 patch.
    """
    lat = latents.detach().float().cpu()
    if lat.dim() == 5:  # video latents (B, C, F, H, W): the first frame
        lat = lat[:, :, 0]
    if lat.dim() == 3:  # a sequence of patches (B, N, C)
        if size is None:
            return []
        width, height = size
        rows = round((lat.shape[1] * height / width) ** 0.5)
        if rows == 0 or lat.shape[1] % rows:
            return []
        packed = 4 if (family or "").startswith("flux") or family == "chroma" else 1
        lat = lat[:, :, ::packed].transpose(1, 2).reshape(lat.shape[0], -1, rows, lat.shape[1] // rows)
    if lat.dim() != 4:
        return []
    if lat.shape[1] == 4:
        weights, bias = _FACTORS["sdxl" if family == "stable-diffusion-xl" else "sd"]
        rgb = torch.einsum("bchw,cr->brhw", lat, torch.tensor(weights)) + torch.tensor(bias)[None, :, None, None]
        rgb = ((rgb + 1) / 2).clamp(0, 1)
    else:
        rgb = lat[:, :3]
        low = rgb.amin(dim=(2, 3), keepdim=True)
        high = rgb.amax(dim=(2, 3), keepdim=True)
        rgb = (rgb - low) / (high - low + 1e-6)
    pixels = (rgb.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(p) for p in pixels]
