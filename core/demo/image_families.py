"""Tiny offline twins of the image families beyond Stable Diffusion that diffusers' AutoPipeline maps serve.

Each loads as a main checkpoint (`demo-kandinsky22`, `demo-kandinsky3`, `demo-wuerstchen`, `demo-cascade`,
`demo-pixart-alpha`, `demo-pixart-sigma`, `demo-if`, `demo-flux`, `demo-auraflow`) and is saved the way the
family's checkpoint on the Hub is laid out: a combined pipeline (prior and decoder in one folder, components
prefixed `prior_`) where the family has one. Shapes follow diffusers' own tests (tests/pipelines/*), kept tiny;
the scale factors of the VAEs (MoVQ, Paella) are the real ones, so each family's size rule holds on its twin.

The T5 families need a T5 tokenizer, which the Hub would give; the twin's is a SentencePiece-style Unigram over
single characters, built with `tokenizers` (the library transformers' fast tokenizers run on) and wrapped in
transformers' `T5TokenizerFast`, so it saves and loads as the real one does (`tokenizer.json`).
"""

from __future__ import annotations

import torch

from core.demo import checkpoint as demo
from core.demo.families import clip_text
from core.demo.tokenizers import t5_tokenizer, xlm_roberta_tokenizer

IMAGE_FAMILIES = {
    "kandinsky21": "Kandinsky 2.1 (a CLIP prior, then a MoVQ decoder that also reads the prompt through a "
    "multilingual CLIP), combined like kandinsky-community/kandinsky-2-1",
    "kandinsky22": "Kandinsky 2.2 (a CLIP prior, then a MoVQ decoder), combined like kandinsky-community/kandinsky-2-2",
    "kandinsky22_inpaint": "Kandinsky 2.2's inpainting decoder (9 input channels) with its prior, like "
    "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "kandinsky3": "Kandinsky 3 (a T5 encoder, a MoVQ UNet), like kandinsky-community/kandinsky-3",
    "wuerstchen": "Wuerstchen (a text-conditioned prior in a 42x compressed space, then a decoder), like "
    "warp-ai/wuerstchen",
    "cascade": "Stable Cascade (prior and decoder UNets over Paella latents), like stabilityai/stable-cascade",
    "pixart_alpha": "PixArt-α (a T5 encoder, a DiT transformer), like PixArt-alpha/PixArt-XL-2-512x512",
    "pixart_sigma": "PixArt-Σ (a T5 encoder, a DiT transformer), like PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
    "if": "DeepFloyd IF stage I (pixel space, a T5 encoder), like DeepFloyd/IF-I-XL-v1.0",
    "flux": "Flux (CLIP and T5 encoders, a flow-matching MMDiT), like black-forest-labs/FLUX.1-dev",
    "auraflow": "AuraFlow (a UMT5 encoder, a flow-matching MMDiT), like fal/AuraFlow",
}
T5_WIDTH = 32  # the twins' T5 encoders' width (d_model)


def _t5_encoder(tokenizer, seed: int, umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=len(tokenizer),
        d_model=T5_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return model_class(config).eval()


def _movq(seed: int):
    """A MoVQ (Kandinsky's VQ autoencoder with spatial norm) with four levels: scale factor 8, as the real one
    (32 channels each: the spatial norm's group norm has 32 groups)."""
    from diffusers import VQModel

    torch.manual_seed(seed)
    return VQModel(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
        up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=16,
        vq_embed_dim=4,
    )


def _kandinsky_prior(seed: int) -> dict:
    """Kandinsky's prior (2.1 and 2.2 share its layout): a CLIP text encoder, a prior transformer that turns the
    prompt into a CLIP image embedding, the image encoder and processor, and kandinsky-community's unCLIP
    scheduler; keyed `prior_*` as a combined pipeline takes them."""
    from diffusers import PriorTransformer, UnCLIPScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, text_encoder = clip_text(seed)
    torch.manual_seed(seed + 1)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=demo.HIDDEN,
            image_size=32,
            patch_size=8,
            projection_dim=demo.HIDDEN,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=1,
        )
    ).eval()
    torch.manual_seed(seed + 2)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=demo.HIDDEN, num_layers=1)
    # The prior un-normalises its output with clip_mean/clip_std, zeros until trained: std 1 keeps it alive.
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    image_processor = CLIPImageProcessor(
        crop_size=32,
        size=32,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )
    return dict(
        prior_prior=prior,
        prior_image_encoder=image_encoder,
        prior_text_encoder=text_encoder,
        prior_tokenizer=tokenizer,
        prior_scheduler=scheduler,
        prior_image_processor=image_processor,
    )


def _kandinsky_unet(seed: int, in_channels: int, **embedding):
    """Kandinsky's decoder UNet: noise and variance out; 9 input channels for the inpainting decoder (latents,
    the masked image's latents and the mask)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=64,  # 64 latents x 8 = 512 px, as kandinsky-2-2-decoder
        in_channels=in_channels,
        out_channels=8,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=demo.HIDDEN,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
        **embedding,
    )


def _kandinsky_ddpm():
    """kandinsky-community's decoder scheduler: DDPM with linear betas."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )


def _kandinsky22(inpaint: bool = False):
    """Kandinsky 2.2 as a combined checkpoint; with `inpaint`, the inpainting decoder (like
    kandinsky-community/kandinsky-2-2-decoder-inpaint, combined with its prior)."""
    from diffusers import KandinskyV22CombinedPipeline, KandinskyV22InpaintCombinedPipeline

    prior = _kandinsky_prior(61)
    unet = _kandinsky_unet(
        64, 9 if inpaint else 4, addition_embed_type="image", encoder_hid_dim=demo.HIDDEN,
        encoder_hid_dim_type="image_proj",
    )  # fmt: skip
    combined = KandinskyV22InpaintCombinedPipeline if inpaint else KandinskyV22CombinedPipeline
    return combined(unet=unet, scheduler=_kandinsky_ddpm(), movq=_movq(65), **prior)


def _kandinsky21():
    """Kandinsky 2.1 as a combined checkpoint, like kandinsky-community/kandinsky-2-1: the decoder reads the
    prompt too, through a multilingual CLIP text encoder (an XLM-RoBERTa model with a projection)."""
    from diffusers import DDIMScheduler, KandinskyCombinedPipeline
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP

    prior = _kandinsky_prior(66)
    tokenizer = xlm_roberta_tokenizer()
    torch.manual_seed(69)
    text_encoder = MultilingualCLIP(
        MCLIPConfig(
            transformerDimSize=demo.HIDDEN,  # the XLM-R model's width
            imageDimSize=demo.HIDDEN,  # the CLIP image embedding's
            hidden_size=demo.HIDDEN,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=1,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            max_position_embeddings=80,
        )
    ).eval()
    unet = _kandinsky_unet(
        70, 4, addition_embed_type="text_image", encoder_hid_dim=demo.HIDDEN, encoder_hid_dim_type="text_image_proj"
    )
    # kandinsky-community/kandinsky-2-1's decoder scheduler: DDIM with linear betas
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    return KandinskyCombinedPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, movq=_movq(71), **prior
    )


def _kandinsky3():
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet

    tokenizer = t5_tokenizer()
    torch.manual_seed(66)
    unet = Kandinsky3UNet(
        in_channels=4,
        time_embedding_dim=4,
        groups=2,
        attention_head_dim=4,
        layers_per_block=3,  # fewer breaks its up blocks' norms
        block_out_channels=(32, 64),
        cross_attention_dim=4,
        encoder_hid_dim=T5_WIDTH,
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        thresholding=False,
    )
    return Kandinsky3Pipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 67),
        unet=unet,
        scheduler=scheduler,
        movq=_movq(68),
    )


def _wuerstchen():
    from diffusers import DDPMWuerstchenScheduler, WuerstchenCombinedPipeline
    from diffusers.pipelines.deprecated.wuerstchen import PaellaVQModel, WuerstchenDiffNeXt, WuerstchenPrior

    prior_tokenizer, prior_text_encoder = clip_text(71, projection=False)
    tokenizer, text_encoder = clip_text(72, projection=False)
    torch.manual_seed(73)
    prior = WuerstchenPrior(c_in=2, c=8, depth=2, c_cond=demo.HIDDEN, c_r=8, nhead=2)
    torch.manual_seed(74)
    decoder = WuerstchenDiffNeXt(
        c_in=4,
        c_out=4,
        c_r=8,
        c_hidden=[16, 32],
        nhead=[-1, 4],
        blocks=[1, 2],
        level_config=["CT", "CTA"],
        clip_embd=demo.HIDDEN,
        inject_effnet=[False, True],
        effnet_embd=2,
    )
    torch.manual_seed(75)
    vqgan = PaellaVQModel(bottleneck_blocks=1, embed_dim=32, num_vq_embeddings=16)  # pixel factor 4, as the real one
    return WuerstchenCombinedPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        decoder=decoder,
        scheduler=DDPMWuerstchenScheduler(),
        vqgan=vqgan,
        prior_tokenizer=prior_tokenizer,
        prior_text_encoder=prior_text_encoder,
        prior_prior=prior,
        prior_scheduler=DDPMWuerstchenScheduler(),
    )


def _cascade():
    from diffusers import DDPMWuerstchenScheduler, StableCascadeCombinedPipeline, StableCascadeUNet
    from diffusers.pipelines.deprecated.wuerstchen import PaellaVQModel

    prior_tokenizer, prior_text_encoder = clip_text(81)
    tokenizer, text_encoder = clip_text(82)
    torch.manual_seed(83)
    prior = StableCascadeUNet(
        in_channels=16,
        out_channels=16,
        conditioning_dim=64,
        block_out_channels=(64, 64),
        num_attention_heads=(2, 2),
        down_num_layers_per_block=(1, 1),
        up_num_layers_per_block=(1, 1),
        clip_image_in_channels=demo.HIDDEN,
        switch_level=(False,),
        clip_text_in_channels=demo.HIDDEN,
        clip_text_pooled_in_channels=demo.HIDDEN,
    ).eval()
    torch.manual_seed(84)
    decoder = StableCascadeUNet(
        in_channels=4,
        out_channels=4,
        conditioning_dim=64,
        block_out_channels=(16, 32, 64, 64),
        num_attention_heads=(-1, -1, 1, 2),
        down_num_layers_per_block=(1, 1, 1, 1),
        up_num_layers_per_block=(1, 1, 1, 1),
        down_blocks_repeat_mappers=(1, 1, 1, 1),
        up_blocks_repeat_mappers=(1, 1, 1, 1),
        block_types_per_layer=(
            ("SDCascadeResBlock", "SDCascadeTimestepBlock"),
            ("SDCascadeResBlock", "SDCascadeTimestepBlock"),
            ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
            ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
        ),
        switch_level=None,
        clip_text_pooled_in_channels=demo.HIDDEN,
        effnet_in_channels=16,
        pixel_mapper_in_channels=3,
        dropout=(0.0, 0.0, 0.0, 0.0),
    ).eval()
    torch.manual_seed(85)
    vqgan = PaellaVQModel(bottleneck_blocks=1, embed_dim=32, num_vq_embeddings=16)  # pixel factor 4, as the real one
    return StableCascadeCombinedPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        decoder=decoder,
        scheduler=DDPMWuerstchenScheduler(),
        vqgan=vqgan,
        prior_text_encoder=prior_text_encoder,
        prior_tokenizer=prior_tokenizer,
        prior_prior=prior,
        prior_scheduler=DDPMWuerstchenScheduler(),
        prior_feature_extractor=None,
        prior_image_encoder=None,
    )


def _pixart(sigma: bool):
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    tokenizer = t5_tokenizer()
    torch.manual_seed(91 if sigma else 92)
    transformer = PixArtTransformer2DModel(
        sample_size=64,  # 64 latents x 8 = 512 px
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=T5_WIDTH,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,  # noise and variance
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        interpolation_scale=1,
    )
    # PixArt's checkpoints ship DPM-Solver++ (2M) over SD's betas
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon", steps_offset=0
    )
    pipeline_class = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    return pipeline_class(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 93 if sigma else 94),
        vae=demo._vae(),
        transformer=transformer,
        scheduler=scheduler,
    )


def _if():
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from diffusers.pipelines.deepfloyd_if import IFWatermarker

    tokenizer = t5_tokenizer()
    torch.manual_seed(101)
    unet = UNet2DConditionModel(
        sample_size=64,  # stage I works in pixels: 64 px
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        in_channels=3,
        out_channels=6,  # noise and variance, per RGB channel
        cross_attention_dim=32,
        encoder_hid_dim=T5_WIDTH,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
        norm_num_groups=16,
    )
    # DeepFloyd's stage I scheduler: cosine betas, learned variance, dynamic thresholding
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.0,
        prediction_type="epsilon",
        variance_type="learned_range",
    )
    return IFPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 102),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=IFWatermarker(),
        requires_safety_checker=False,
    )


def flow_vae(seed: int):
    """A 16-channel VAE as SD3 and Flux have, four levels: scale factor 8."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )


def _flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, text_encoder = clip_text(111, projection=False)
    tokenizer_2 = t5_tokenizer()
    torch.manual_seed(112)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=demo.HIDDEN,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,  # as FLUX.1-dev: guidance is an input, not a second pass
    )
    # FLUX.1-dev's scheduler: shift by image size
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096,
    )  # fmt: skip
    return FluxPipeline(
        scheduler=scheduler,
        vae=flow_vae(113),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(tokenizer_2, 114),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _auraflow():
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = t5_tokenizer()
    torch.manual_seed(121)
    transformer = AuraFlowTransformer2DModel(
        sample_size=64,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=T5_WIDTH,
        out_channels=4,
        pos_embed_max_size=256,
    )
    return AuraFlowPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 122, umt5=True),
        vae=demo._vae(),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


IMAGE_FAMILY_BUILDERS = {
    "kandinsky21": _kandinsky21,
    "kandinsky22": _kandinsky22,
    "kandinsky22_inpaint": lambda: _kandinsky22(inpaint=True),
    "kandinsky3": _kandinsky3,
    "wuerstchen": _wuerstchen,
    "cascade": _cascade,
    "pixart_alpha": lambda: _pixart(sigma=False),
    "pixart_sigma": lambda: _pixart(sigma=True),
    "if": _if,
    "flux": _flux,
    "auraflow": _auraflow,
}
