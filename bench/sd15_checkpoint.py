"""A random-weight checkpoint with Stable Diffusion 1.5's real architecture and sizes, for benchmarks.

    python bench/sd15_checkpoint.py [DIR]

The UNet has SD 1.5's ~860M parameters, the CLIP text encoder its ~123M, the VAE its ~84M, in the Hub layout
(`model_index.json` + one folder per component, safetensors), so loading, switching and denoising cost what they
cost with the real weights; only the pictures are noise. No download: everything is built from configs. Written
once (about 4.3 GB in float32) into the demo cache folder and reused.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from core.demo import checkpoint as demo

VERSION = 1


# SD's VAE (84M parameters), which SDXL keeps with another scaling factor (bench/sdxl_checkpoint.py).
SD_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
)


def build():
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    # UNet2DConditionModel's defaults are SD 1.5's blocks (320/640/1280/1280, 2 layers, 8 heads); SD 1.5 reads
    # CLIP ViT-L/14's 768-wide text states at 64x64 latents.
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
    vae = AutoencoderKL(**SD_VAE, sample_size=512)
    tokenizer = demo._tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=PNDMScheduler.from_config(demo.SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write(path: Path) -> Path:
    build().save_pretrained(path, safe_serialization=True)
    return path


def sd15_sized_path(cache_dir: Path | None = None) -> Path:
    """The checkpoint's folder, written on first use."""
    root = cache_dir or demo.default_cache_dir()
    return demo.write_once(root / f"bench-sd15-sized-v{VERSION}", write)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(write(target) if target else sd15_sized_path())
