"""Tiny offline twin of BLIP Diffusion (subject-driven generation: a BLIP-2 Q-Former reads a reference image and
its subject's category, and its query embeddings join the prompt's in the text encoder), deprecated in diffusers.

It loads as a main checkpoint (`demo-blip-diffusion`), laid out as Salesforce/blipdiffusion is; shapes follow
diffusers' own test (tests/pipelines/blipdiffusion, removed with the pipeline's deprecation), kept tiny, and the
components are those of diffusers' scripts/convert_blipdiffusion_to_diffusers.py: SD 1.5's tokenizer, VAE and
scheduler (here the demo's tokenizer and VAE, byte-identical to the demo's files), a ContextCLIPTextModel, a UNet
and the Q-Former.

Two things of the pipeline's shape the twin must keep that a smaller one would not:
- The pipeline sizes its latents by the UNet's levels (`2 ** (levels - 1)`), not by the VAE's scale factor. They agree
  in SD 1.5 (4 levels, 8x); the twin's UNet has four levels too, so an image comes out at the size asked.
- The Q-Former loads its BERT tokenizer itself, in `__init__`, from the name in its config (`tokenizer`; none means
  `bert-base-uncased` from the Hub: the real checkpoint needs that download too). The twin's config names a BERT
  WordPiece tokenizer built offline (core.demo.tokenizers.bert_tokenizer), written once into the demo cache folder
  ($DIFFUSION_STUDIO_CACHE, else ~/.cache/diffusion-studio), by its absolute path: a path inside the twin would go
  stale when the twin's folder is renamed into place, and a relative one is read from the working directory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.demo import checkpoint as demo

BLIP = {
    "blip_diffusion": "BLIP Diffusion (subject-driven: a BLIP-2 Q-Former reads a reference image of the subject), "
    "like Salesforce/blipdiffusion",
}
# Salesforce/blipdiffusion names its own modules' library `blip_diffusion`, where they were before diffusers moved
# them under pipelines/deprecated; the studio and the snippet alias it (core.checkpoints.loading.MOVED_LIBRARIES).
BLIP_AS_PUBLISHED = {
    "blip_diffusion": {
        "text_encoder": ["blip_diffusion", "ContextCLIPTextModel"],
        "qformer": ["blip_diffusion", "Blip2QFormerModel"],
        "image_processor": ["blip_diffusion", "BlipImageProcessor"],
    }
}
_IMAGE_SIZE = 32  # the reference image's side in the Q-Former's vision encoder (the real one: 224)
QFORMER_TOKENIZER_VERSION = 1


def qformer_tokenizer_path() -> Path:
    """The folder of the twin's Q-Former tokenizer (BERT WordPiece, built offline), written on first use."""
    from core.demo.tokenizers import bert_tokenizer

    target = demo.default_cache_dir() / f"demo-qformer-tokenizer-v{QFORMER_TOKENIZER_VERSION}"
    return demo.write_once(target, lambda folder: bert_tokenizer().save_pretrained(folder))


def _qformer():
    from diffusers.pipelines.deprecated.blip_diffusion.modeling_blip2 import Blip2QFormerModel
    from transformers import BertTokenizer
    from transformers.models.blip_2.configuration_blip_2 import Blip2Config

    tokenizer = qformer_tokenizer_path()
    vocab = len(BertTokenizer.from_pretrained(tokenizer)) + 1  # the Q-Former adds a `[DEC]` token, as the real one
    config = Blip2Config(
        vision_config=dict(
            hidden_size=demo.HIDDEN, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
            image_size=_IMAGE_SIZE, patch_size=8, hidden_act="quick_gelu",
        ),
        qformer_config=dict(
            vocab_size=vocab, hidden_size=demo.HIDDEN, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=512, cross_attention_frequency=1,
            encoder_hidden_size=demo.HIDDEN,
        ),
        num_query_tokens=16,  # as the real one: the prompt keeps 77 - 16 tokens
        tokenizer=str(tokenizer),
    )  # fmt: skip
    torch.manual_seed(191)
    return Blip2QFormerModel(config).eval()


def _text_encoder(tokenizer):
    from diffusers.pipelines.deprecated.blip_diffusion.modeling_ctx_clip import ContextCLIPTextModel

    # The demo's CLIP text encoder's architecture (the real one is SD 1.5's, read into this class).
    config = demo._text_encoder(tokenizer).config
    torch.manual_seed(192)
    return ContextCLIPTextModel(config).eval()


def _unet():
    # SD 1.5's four levels (attention in the first three), at the demo's widths.
    return demo.unet_with(
        193,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


def _blip_diffusion():
    from diffusers import BlipDiffusionPipeline, PNDMScheduler
    from diffusers.pipelines.deprecated.blip_diffusion.blip_image_processing import BlipImageProcessor

    tokenizer = demo._tokenizer()
    # The converter's scheduler: SD 1.5's betas, PNDM without its Runge-Kutta warm-up.
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False, skip_prk_steps=True
    )
    return BlipDiffusionPipeline(
        tokenizer=tokenizer,
        text_encoder=_text_encoder(tokenizer),
        vae=demo._vae(),
        unet=_unet(),
        scheduler=scheduler,
        qformer=_qformer(),
        image_processor=BlipImageProcessor(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}),
    )


BLIP_BUILDERS = {"blip_diffusion": _blip_diffusion}
