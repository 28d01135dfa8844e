"""A random-weight checkpoint with SDXL's real architecture and sizes, for the GPU suite.

    python bench/sdxl_checkpoint.py [DIR]

The UNet has SDXL base's ~2.6B parameters (320/640/1280 channels, 1/2/10 transformer layers, 2048-wide text states,
the text-time embedding), the two text encoders are CLIP ViT-L and OpenCLIP ViT-bigG's sizes, the VAE SD's with
SDXL's scaling factor, in the Hub layout, saved in float16 (~6.9 GB). Nothing is downloaded; only the pictures are
noise. Built on the GPU when there is one (initialising 3.5B parameters on a CPU takes minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.sd15_checkpoint import SD_VAE
from core.demo import checkpoint as demo

VERSION = 1


def build():
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    vae = AutoencoderKL(**SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    tokenizer = demo._tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, **ids,
        )
    )  # fmt: skip
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            max_position_embeddings=77, hidden_act="gelu", projection_dim=1280, **ids,
        )
    )  # fmt: skip
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
    )


def write(path: Path) -> Path:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        pipe = build()
    pipe.to(torch.float16).save_pretrained(path, safe_serialization=True)
    return path


def sdxl_sized_path(cache_dir: Path | None = None) -> Path:
    """The checkpoint's folder, written on first use."""
    root = cache_dir or demo.default_cache_dir()
    return demo.write_once(root / f"bench-sdxl-sized-v{VERSION}", write)


if __name__ == "__main__":
    print(write(Path(sys.argv[1])) if len(sys.argv) > 1 else sdxl_sized_path())
