"""A tiny offline twin of Versatile Diffusion (shi-labs/versatile-diffusion): one checkpoint, two UNets. The image
UNet denoises image latents; the text UNet (a `UNetFlatConditionModel`, built for text latents) has the same block
layout, so its attention blocks fit the image UNet's places. Text to image runs the image UNet with the text UNet's
attention blocks swapped in; image variation runs it as it is; dual-guided runs both sets side by side, mixed.

It loads as a main checkpoint (`demo-versatile`), laid out as the Hub one (`VersatileDiffusionPipeline`); every
module is seeded just before it is built, so the files are the same on every machine.
"""

from __future__ import annotations

import torch

from core.demo import checkpoint as demo

VERSATILE = {
    "versatile": "Versatile Diffusion (text to image, image variation and dual-guided from one checkpoint: an image "
    "and a text UNet, CLIP text and image encoders), like shi-labs/versatile-diffusion",
}
# 257 image tokens (16 x 16 patches and the class token), as CLIP ViT-L/14 at 224 px gives them: the dual-guided
# attention cuts the image embedding at that length (VersatileDiffusionDualGuidedPipeline.set_transformer_params).
_IMAGE_SIZE, _PATCH = 224, 14
_LEVELS = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    cross_attention_dim=demo.HIDDEN,  # the width of both encoders' projections: dual-guided concatenates them
    attention_head_dim=8,
    norm_num_groups=16,
)


def _text_encoder(tokenizer):
    from transformers import CLIPTextModelWithProjection

    # The demo's text encoder's shape, with the projection Versatile Diffusion normalises its embeddings by.
    config = demo._text_encoder(tokenizer).config
    torch.manual_seed(60)
    return CLIPTextModelWithProjection(config).eval()


def _image_encoder():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(61)
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=demo.HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=_IMAGE_SIZE,
        patch_size=_PATCH,
    )
    return CLIPVisionModelWithProjection(config).eval()


def _image_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(62)
    # Attention only at the lower level, as in the demo's UNet (a 512 px image stays quick).
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_LEVELS,
    )


def _text_unet():
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    torch.manual_seed(63)
    # The image UNet's levels in the flat blocks (linear layers over a 1 x 1 "image" of text latents): each of its
    # attention blocks sits where the image UNet has one, of the same width. The real one's latents are 768 wide.
    return UNetFlatConditionModel(
        in_channels=(demo.HIDDEN, 1, 1),
        out_channels=(demo.HIDDEN, 1, 1),
        down_block_types=("DownBlockFlat", "CrossAttnDownBlockFlat"),
        up_block_types=("CrossAttnUpBlockFlat", "UpBlockFlat"),
        **_LEVELS,
    )


def _versatile():
    from diffusers import PNDMScheduler, VersatileDiffusionPipeline
    from transformers import CLIPImageProcessor

    tokenizer = demo._tokenizer()
    return VersatileDiffusionPipeline(
        tokenizer=tokenizer,
        # CLIP ViT-L/14's preprocessing (224 px, its mean and deviation): the processor's defaults.
        image_feature_extractor=CLIPImageProcessor(),
        text_encoder=_text_encoder(tokenizer),
        image_encoder=_image_encoder(),
        image_unet=_image_unet(),
        text_unet=_text_unet(),
        vae=demo._vae(),  # Stable Diffusion's autoencoder, as the real checkpoint's is
        # SD 1.5's schedule: the conversion script's default scheduler (PNDM) with Versatile Diffusion's betas.
        scheduler=PNDMScheduler.from_config(demo.SD15_SCHEDULER),
    )


VERSATILE_BUILDERS = {"versatile": _versatile}
# The Hub checkpoint was saved when the text UNet's module was diffusers.pipelines.versatile_diffusion (now under
# deprecated/), and its processor's class was named as transformers names it today.
VERSATILE_AS_PUBLISHED = {
    "versatile": {
        "text_unet": ["versatile_diffusion", "UNetFlatConditionModel"],
        "image_feature_extractor": ["transformers", "CLIPImageProcessor"],
    }
}
