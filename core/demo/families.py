"""Tiny offline twins of checkpoints of other families (SDXL, SD3) and of adapters, written like the demo.

They load as main checkpoints (`demo-sdxl`, `demo-sd3`) or as adapters (`demo-lora`, `demo-ip-adapter`), so the
code paths of those families and of diffusers' adapter API run without a network.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.demo import checkpoint as demo

FAMILIES = {
    "sdxl": "SDXL (two text encoders, size-and-crop conditioning), like stabilityai/stable-diffusion-xl-base-1.0",
    "sd3": "SD3 without its T5 encoder (MMDiT transformer, flow matching), like stabilityai/stable-diffusion-3-medium",
}
LORA_FORMAT_VERSION = 1


def clip_text(seed: int, projection: bool = True) -> tuple:
    """The demo tokenizer and a tiny CLIP text encoder freshly seeded (with a projection: its pooled embedding is
    used), as every twin with CLIP text pairs them."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = demo._tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=demo.HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=demo.HIDDEN,
    )
    torch.manual_seed(seed)
    return tokenizer, (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _two_text_encoders(first_with_projection: bool, seeds: tuple[int, int]) -> tuple:
    """The demo tokenizer and two tiny CLIP text encoders, as SDXL and SD3 pair them (the second always with a
    projection, for the pooled embedding; SD3's first too)."""
    tokenizer, first = clip_text(seeds[0], projection=first_with_projection)
    return tokenizer, first, clip_text(seeds[1])[1]


def _sdxl_unet(seed: int, cross_attention_dim: int, time_ids: int):
    """A tiny SDXL-style UNet: it reads text hidden states of `cross_attention_dim`, plus pooled text and
    `time_ids` size/crop (and, for the refiner, aesthetic-score) embeddings."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=16,
        projection_class_embeddings_input_dim=time_ids * 8 + demo.HIDDEN,
        cross_attention_dim=cross_attention_dim,
    )


def _sdxl_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def sdxl_unet():
    """The SDXL twin's UNet, freshly built (control modules are shaped after it)."""
    return _sdxl_unet(24, 2 * demo.HIDDEN, 6)


def _sdxl():
    from diffusers import StableDiffusionXLPipeline

    tokenizer, text_encoder, text_encoder_2 = _two_text_encoders(False, (22, 23))
    # The base reads both encoders side by side; 6 time ids: original size, crop corner, target size.
    return StableDiffusionXLPipeline(
        vae=demo._vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=demo._tokenizer(),
        unet=sdxl_unet(),
        scheduler=_sdxl_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


def _sdxl_refiner():
    """SDXL's refiner: image to image with the base's second text encoder and VAE (byte-identical here, as in
    stabilityai's two repos, so the pool shares them) and its own UNet, conditioned on an aesthetic score."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    _tokenizer, _first, text_encoder_2 = _two_text_encoders(False, (22, 23))
    # 5 time ids: original size, crop corner, aesthetic score.
    return StableDiffusionXLImg2ImgPipeline(
        vae=demo._vae(),
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=demo._tokenizer(),
        unet=_sdxl_unet(29, demo.HIDDEN, 5),
        scheduler=_sdxl_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


def _sd3():
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tokenizer, text_encoder, text_encoder_2 = _two_text_encoders(True, (25, 26))
    torch.manual_seed(27)
    # Patches of 2 latents over a VAE that downsamples 8x: sizes are multiples of 16, as for the real SD3.
    transformer = SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,  # PAG perturbs "blocks.1", as on the real SD3
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=2 * demo.HIDDEN,
        pooled_projection_dim=2 * demo.HIDDEN,
    )
    torch.manual_seed(28)
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=demo._tokenizer(),
        text_encoder_3=None,
        tokenizer_3=None,
    )


FAMILY_BUILDERS = {"sdxl": _sdxl, "sd3": _sd3}
# Companions of these families (see core.demo.companions).
COMPANION_BUILDERS = {"refiner": _sdxl_refiner}
REFINER = "SDXL refiner (second stage of SDXL text to image), like stabilityai/stable-diffusion-xl-refiner-1.0"


def write_demo_lora(path: str | os.PathLike, seed: int = 21) -> Path:
    """A tiny LoRA for the demo's UNet attention, made with peft as diffusers' training scripts do, saved as
    `pytorch_lora_weights.safetensors` in `path`. Its B matrices are random (not peft's zeros), so it changes
    images. Another `seed` makes another LoRA (the LCM-LoRA twin is one: only its name says what it is)."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = demo._unet()
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    path = Path(path)
    StableDiffusionPipeline.save_lora_weights(
        path, unet_lora_layers=get_peft_model_state_dict(unet), safe_serialization=True
    )
    return path


DEMO_LORAS = {"demo-lora": 21, "demo-lcm-lora": 35}  # the LoRA twins, by source, with their seeds


def demo_lora_path(cache_dir: str | os.PathLike | None = None, source: str = "demo-lora") -> Path:
    """A demo LoRA's folder (`demo-lora`, or the LCM-LoRA's stand-in `demo-lcm-lora`), written on first use."""
    root = Path(cache_dir) if cache_dir is not None else demo.default_cache_dir()
    seed = DEMO_LORAS[source]
    target = root / f"{source}-v{demo.DEMO_FORMAT_VERSION}.{LORA_FORMAT_VERSION}"
    return demo.write_once(target, lambda folder: write_demo_lora(folder, seed))


IP_ADAPTER_FORMAT_VERSION = 1
IP_ADAPTER_WEIGHTS = "ip-adapter_demo.safetensors"


def write_demo_ip_adapter(path: str | os.PathLike) -> Path:
    """A tiny IP-Adapter for the demo's UNet, laid out like `h94/IP-Adapter/models`: the adapter's weights in
    `ip-adapter_demo.safetensors` (`image_proj.*` and `ip_adapter.*`, the names diffusers' loader reads) and its
    CLIP image encoder in `image_encoder/`, at the size of the demo's feature extractor."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(path)
    torch.manual_seed(31)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=demo.HIDDEN,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=demo._SAFETY_IMAGE_SIZE,
            patch_size=8,
            projection_dim=demo.HIDDEN,
        )
    ).eval()
    encoder.save_pretrained(path / "image_encoder")
    unet = demo._unet()
    cross, tokens = unet.config.cross_attention_dim, 4  # the plain IP-Adapter: 4 image tokens
    generator = torch.Generator().manual_seed(32)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    weights = {
        "image_proj.proj.weight": rand(cross * tokens, demo.HIDDEN),
        "image_proj.proj.bias": torch.zeros(cross * tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    # One key pair per cross-attention layer, numbered as the loader counts them (1, 3, 5, ...: every second
    # attention processor in the UNet's order), each projecting image tokens to that layer's width.
    cross_layers = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross_layers):
        module = unet.get_submodule(name.removesuffix(".processor"))
        width = module.to_k.out_features
        weights[f"ip_adapter.{2 * index + 1}.to_k_ip.weight"] = rand(width, cross)
        weights[f"ip_adapter.{2 * index + 1}.to_v_ip.weight"] = rand(width, cross)
    save_file(weights, str(path / IP_ADAPTER_WEIGHTS))
    return path


def demo_ip_adapter_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The demo IP-Adapter's folder, written on first use."""
    root = Path(cache_dir) if cache_dir is not None else demo.default_cache_dir()
    name = f"demo-ip-adapter-v{demo.DEMO_FORMAT_VERSION}.{IP_ADAPTER_FORMAT_VERSION}"
    return demo.write_once(root / name, write_demo_ip_adapter)
