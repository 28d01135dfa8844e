"""Tiny offline twins of the image families with a Gemma text encoder that diffusers' AutoPipeline maps serve:
Sana, Lumina and Lumina 2.

Each loads as a main checkpoint (`demo-sana`, `demo-lumina`, `demo-lumina2`) and is saved the way the family's
checkpoint on the Hub is laid out. Shapes follow diffusers' own tests (tests/pipelines/sana, tests/pipelines/lumina,
tests/pipelines/lumina2), kept tiny; the components' classes, the schedulers and the autoencoders' scale factors
are the real ones (diffusers' scripts/convert_sana_to_diffusers.py and convert_lumina_to_diffusers.py), so each
family's size rule holds on its twin: Sana's DC-AE compresses 32x (six levels, as the real one), Lumina's VAEs 8x.

The Gemma tokenizer (a Hub download) is built offline with `tokenizers`, laid out as Gemma's tokenizer.json is: a
BPE with byte fallback over single characters (no merges), `▁` for a space, `<bos>` before every prompt, ids as in
Gemma (<pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4); wrapped in transformers' `GemmaTokenizerFast`, so it saves and
loads as the real one does. A character-level tokenizer makes prompts longer in tokens than Gemma's would: Sana's
complex human instruction (prepended to every prompt) is 1,058 tokens here, and Lumina 2's system prompt takes 165 of
its 256, so a prompt over about 90 characters is cut short on that twin (the pipeline logs what it cut).
"""

from __future__ import annotations

import string

import torch

from core.demo import checkpoint as demo
from core.demo.image_families import flow_vae

GEMMA_FAMILIES = {
    "sana": "Sana (a Gemma 2 encoder, a linear-attention DiT over a 32x DC-AE, flow DPM-Solver), like "
    "Efficient-Large-Model/Sana_600M_512px_diffusers",
    "lumina": "Lumina-Next (a Gemma encoder, a flow-matching Next-DiT), like Alpha-VLLM/Lumina-Next-SFT-diffusers",
    "lumina2": "Lumina Image 2.0 (a Gemma 2 encoder, a unified flow-matching DiT, Flux's 16-channel VAE), like "
    "Alpha-VLLM/Lumina-Image-2.0",
}
GEMMA_WIDTH = 32  # the twins' Gemma encoders' width (hidden_size) = the transformers' caption width


def gemma_tokenizer(padding_side: str = "left"):
    """A Gemma tokenizer whose pieces are single characters (bytes outside them fall back to `<0x..>`), ids as in
    Gemma; a prompt reads `<bos> …`. Gemma's own pads on the left; Sana's and Lumina 2's checkpoints save theirs
    padding on the right, as their pipelines set it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import GemmaTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab = {token: i for i, token in enumerate(specials)}
    vocab |= {f"<0x{byte:02X}>": len(specials) + byte for byte in range(256)}
    for piece in ["▁", *string.ascii_letters, *string.digits, *string.punctuation]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos>:1 $B:1", special_tokens=[("<bos>", 2)]
    )
    tokenizer.add_special_tokens(specials)
    return GemmaTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        padding_side=padding_side,
    )


def _gemma_encoder(tokenizer, seed: int, gemma2: bool):
    """A Gemma (Lumina-Next: google/gemma-2b) or Gemma 2 (Sana, Lumina 2: gemma-2-2b) decoder stack, no LM head,
    as the pipelines read it: two layers, multi-query attention as gemma-2b has."""
    from transformers import Gemma2Config, Gemma2Model, GemmaConfig, GemmaModel

    config_class, model_class = (Gemma2Config, Gemma2Model) if gemma2 else (GemmaConfig, GemmaModel)
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=GEMMA_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return model_class(config).eval()


def _dc_ae(seed: int):
    """A DC-AE as Sana's (mit-han-lab/dc-ae-f32c32-sana-1.0): six levels, so it compresses 32x, 32 latent channels,
    ResBlocks then EfficientViT blocks with multi-scale linear attention; one layer a level, 8 to 32 channels."""
    from diffusers import AutoencoderDC

    torch.manual_seed(seed)
    blocks = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    channels = (8, 8, 16, 16, 32, 32)
    scales = ((), (), (), (5,), (5,), (5,))
    return AutoencoderDC(
        in_channels=3,
        latent_channels=32,
        attention_head_dim=8,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=channels,
        decoder_block_out_channels=channels,
        encoder_layers_per_block=(1,) * 6,
        decoder_layers_per_block=(1,) * 6,
        encoder_qkv_multiscales=scales,
        decoder_qkv_multiscales=scales,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()


def _sana():
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel

    tokenizer = gemma_tokenizer(padding_side="right")
    text_encoder = _gemma_encoder(tokenizer, 201, gemma2=True)
    torch.manual_seed(202)
    transformer = SanaTransformer2DModel(
        in_channels=32,
        out_channels=32,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=GEMMA_WIDTH,
        mlp_ratio=2.5,
        attention_bias=False,
        sample_size=16,  # 16 latents x 32 = 512 px: the pipeline bins sizes to its 512 px aspect ratios
        patch_size=1,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        interpolation_scale=None,
    ).eval()
    # Sana's checkpoints ship DPM-Solver++ over flow sigmas (flow_shift 3 below 4K)
    scheduler = DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction")
    return SanaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=_dc_ae(203), transformer=transformer, scheduler=scheduler
    )


def _lumina():
    from diffusers import FlowMatchEulerDiscreteScheduler, LuminaNextDiT2DModel, LuminaPipeline

    tokenizer = gemma_tokenizer()
    text_encoder = _gemma_encoder(tokenizer, 211, gemma2=False)
    torch.manual_seed(212)
    transformer = LuminaNextDiT2DModel(
        sample_size=128,  # 128 latents x 8 = 1024 px, as Lumina-Next-SFT
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        learn_sigma=True,
        qk_norm=True,
        cross_attention_dim=GEMMA_WIDTH,
        scaling_factor=1.0,
    ).eval()
    # Created with torch.empty (uninitialised memory) and never read by forward: zeros keep the twin's bytes fixed.
    torch.nn.init.zeros_(transformer.pad_token)
    return LuminaPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=demo._vae(),  # Lumina-Next's is SDXL's: 4 channels, scale factor 8, as the demo's
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )


def _lumina2():
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    tokenizer = gemma_tokenizer(padding_side="right")
    text_encoder = _gemma_encoder(tokenizer, 221, gemma2=True)
    torch.manual_seed(222)
    transformer = Lumina2Transformer2DModel(
        sample_size=128,  # 128 latents x 8 = 1024 px, as Lumina-Image-2.0
        patch_size=2,
        in_channels=16,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=(8, 4, 4),  # sums to the head width (16)
        axes_lens=(300, 512, 512),
        cap_feat_dim=GEMMA_WIDTH,
    ).eval()
    return Lumina2Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=6.0),  # Lumina-Image-2.0 samples with time shift 6
        vae=flow_vae(223),  # Flux's VAE: 16 channels, scale factor 8
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )


GEMMA_FAMILY_BUILDERS = {"sana": _sana, "lumina": _lumina, "lumina2": _lumina2}
