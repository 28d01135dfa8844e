"""Tiny offline twins of more pipelines the Pipeline tab runs from their signature: latent diffusion (text to
image, super-resolution, unconditional), DeepFloyd IF's super-resolution stage, Shap-E's image to 3D, VQ Diffusion
and unCLIP (Karlo).

Each loads as a main checkpoint (`demo-ldm-text2img`, `demo-ldm-superres`, `demo-ldm-uncond`, `demo-if-superres`,
`demo-shap-e-img2img`, `demo-vq-diffusion`, `demo-karlo`), laid out as the Hub checkpoint it stands for; shapes
follow diffusers' own tests, kept tiny.
"""

from __future__ import annotations

import torch

from core.demo import checkpoint as demo
from core.demo.tokenizers import bert_tokenizer, gpt2_tokenizer, t5_tokenizer, xlm_roberta_tokenizer

STAGES = {
    "ldm_text2img": "latent diffusion text to image (an LDM-BERT encoder), like CompVis/ldm-text2im-large-256",
    "ldm_superres": "latent diffusion 4x super-resolution (a VQ autoencoder), like "
    "CompVis/ldm-super-resolution-4x-openimages",
    "ldm_uncond": "unconditional latent diffusion (a VQ autoencoder), like CompVis/ldm-celebahq-256",
    "if_superres": "DeepFloyd IF stage II (64 px to 256 px, a T5 encoder), like DeepFloyd/IF-II-L-v1.0",
    "shap_e_img2img": "image to 3D (a CLIP image encoder, a prior over implicit-function latents), like "
    "openai/shap-e-img2img",
    "vq_diffusion": "VQ Diffusion (a discrete transformer over VQ codes), like microsoft/vq-diffusion-ithq",
    "karlo": "unCLIP (a prior, a decoder and two super-resolution UNets, in pixels), like kakaobrain/karlo-v1-alpha",
    "karras_ve": "Stochastic Karras VE (an unconditional pixel UNet, a second-order stochastic sampler)",
    "unidiffuser": "UniDiffuser (one transformer over image, CLIP image and text latents; a GPT-2 caption decoder), "
    "like thu-ml/unidiffuser-v1",
    "alt_diffusion": "AltDiffusion (Stable Diffusion with a multilingual XLM-RoBERTa text encoder), like "
    "BAAI/AltDiffusion-m9",
    "karlo_variation": "unCLIP image variation (a CLIP image encoder instead of the prior), like "
    "kakaobrain/karlo-v1-alpha-image-variations",
}


def _vq(seed: int, latent_channels: int, levels: int = 2):
    from diffusers import VQModel

    torch.manual_seed(seed)
    return VQModel(
        block_out_channels=[32] * levels,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        latent_channels=latent_channels,
        norm_num_groups=8,
        num_vq_embeddings=16,
        vq_embed_dim=latent_channels,  # said, not implied: VQ Diffusion reads it to shape its codes
    )


def _ldm_text2img():
    from diffusers import DDIMScheduler, LDMTextToImagePipeline, UNet2DConditionModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

    tokenizer = bert_tokenizer()
    torch.manual_seed(131)
    bert = LDMBertModel(
        LDMBertConfig(
            vocab_size=len(tokenizer), max_position_embeddings=77, encoder_layers=2, encoder_ffn_dim=64,
            encoder_attention_heads=4, head_dim=8, d_model=demo.HIDDEN, pad_token_id=0,
        )
    ).eval()  # fmt: skip
    torch.manual_seed(132)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,  # 32 latents x 8 = 256 px
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=demo.HIDDEN,
        norm_num_groups=16,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    return LDMTextToImagePipeline(vqvae=demo._vae(), bert=bert, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def _ldm_superres():
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel

    torch.manual_seed(133)
    # The UNet reads the low-resolution image beside the noisy latents: 3 + 3 channels.
    unet = UNet2DModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=6,
        out_channels=3,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    )
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0155, beta_schedule="linear", clip_sample=False)
    # The pipeline upscales by the VQ autoencoder's factor: the real one's three levels make it 4x, the twin's two 2x.
    return LDMSuperResolutionPipeline(vqvae=_vq(134, 3), unet=unet, scheduler=scheduler)


def _ldm_uncond():
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel

    torch.manual_seed(135)
    unet = UNet2DModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    )
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="linear", clip_sample=False)
    return LDMPipeline(vqvae=_vq(136, 3), unet=unet, scheduler=scheduler)


def _if_superres():
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline, UNet2DConditionModel
    from diffusers.pipelines.deepfloyd_if import IFWatermarker

    from core.demo.image_families import _t5_encoder

    tokenizer = t5_tokenizer()
    torch.manual_seed(141)
    # Stage II reads the upscaled stage I image beside the noise (6 channels) and its noise level as a class.
    unet = UNet2DConditionModel(
        sample_size=64,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        in_channels=6,
        out_channels=6,
        cross_attention_dim=32,
        encoder_hid_dim=32,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
        class_embed_type="timestep",
        mid_block_scale_factor=1.414,
        time_embedding_act_fn="gelu",
        time_embedding_dim=32,
        norm_num_groups=16,
    )
    betas = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001, beta_end=0.02)
    scheduler = DDPMScheduler(
        **betas, thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.0,
        prediction_type="epsilon", variance_type="learned_range",
    )  # fmt: skip
    return IFSuperResolutionPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 142),
        unet=unet,
        scheduler=scheduler,
        image_noising_scheduler=DDPMScheduler(**betas),
        safety_checker=None,
        feature_extractor=None,
        watermarker=IFWatermarker(),
        requires_safety_checker=False,
    )


def _shap_e_img2img():
    from diffusers import PriorTransformer, ShapEImg2ImgPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from core.demo.pipelines import shap_e_renderer, shap_e_scheduler

    torch.manual_seed(143)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16, image_size=32, projection_dim=16, intermediate_size=24, num_attention_heads=2,
            num_channels=3, num_hidden_layers=2, patch_size=8,
        )
    ).eval()  # fmt: skip
    image_processor = CLIPImageProcessor(
        crop_size=32, do_center_crop=True, do_normalize=True, do_resize=True, resample=3, size=32,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )  # fmt: skip
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=16, embedding_dim=16, num_embeddings=32, embedding_proj_dim=16,
        time_embed_dim=64, num_layers=1, clip_embed_dim=32, additional_embeddings=0, time_embed_act_fn="gelu",
        norm_in_type="layer", embedding_proj_norm_type="layer", encoder_hid_proj_type=None, added_emb_type=None,
    )  # fmt: skip
    return ShapEImg2ImgPipeline(
        prior=prior,
        image_encoder=image_encoder,
        image_processor=image_processor,
        shap_e_renderer=shap_e_renderer(),
        scheduler=shap_e_scheduler(),
    )


def _vq_diffusion():
    from diffusers import Transformer2DModel, VQDiffusionPipeline, VQDiffusionScheduler
    from diffusers.pipelines.deprecated.vq_diffusion.pipeline_vq_diffusion import (
        LearnedClassifierFreeSamplingEmbeddings,
    )

    from core.demo.families import clip_text

    tokenizer, text_encoder = clip_text(151, projection=False)
    codes = 16  # the VQ autoencoder's codebook; the transformer also predicts a "masked" code
    vqvae = _vq(152, 3)  # 16 codes
    torch.manual_seed(153)
    transformer = Transformer2DModel(
        attention_bias=True, cross_attention_dim=demo.HIDDEN, attention_head_dim=16, num_attention_heads=2,
        num_vector_embeds=codes + 1, num_embeds_ada_norm=20, norm_num_groups=16, sample_size=16,
        activation_fn="geglu-approximate", num_layers=1,
    )  # fmt: skip
    return VQDiffusionPipeline(
        vqvae=vqvae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=VQDiffusionScheduler(num_vec_classes=codes + 1, num_train_timesteps=20),
        learned_classifier_free_sampling_embeddings=LearnedClassifierFreeSamplingEmbeddings(learnable=False),
    )


def _karlo_stages() -> dict:
    """unCLIP's decoder (with its text projection and CLIP text encoder) and two super-resolution UNets, in
    pixels, with their schedulers: what Karlo's text to image and image variation share."""
    from diffusers import UnCLIPScheduler, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

    from core.demo.families import clip_text

    tokenizer, text_encoder = clip_text(161)
    width, cross = demo.HIDDEN, 64
    torch.manual_seed(163)
    text_proj = UnCLIPTextProjModel(clip_embeddings_dim=width, time_embed_dim=4 * 32, cross_attention_dim=cross)
    torch.manual_seed(164)
    decoder = UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=6,  # pixels; noise and variance
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=cross, attention_head_dim=4, resnet_time_scale_shift="scale_shift",
        class_embed_type="identity",
    )  # fmt: skip
    super_res = dict(
        sample_size=64, layers_per_block=1, in_channels=6, out_channels=3, block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"),
        up_block_types=("ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
    )  # fmt: skip
    torch.manual_seed(165)
    super_res_first = UNet2DModel(**super_res)
    torch.manual_seed(166)
    super_res_last = UNet2DModel(**super_res)
    return dict(
        decoder=decoder,
        text_proj=text_proj,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        super_res_first=super_res_first,
        super_res_last=super_res_last,
        decoder_scheduler=UnCLIPScheduler(
            variance_type="learned_range", prediction_type="epsilon", num_train_timesteps=1000
        ),
        super_res_scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000
        ),
    )


def _karlo():
    from diffusers import PriorTransformer, UnCLIPPipeline, UnCLIPScheduler

    stages = _karlo_stages()
    torch.manual_seed(162)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=demo.HIDDEN, num_layers=1)
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))  # zeros until trained: see Kandinsky's
    return UnCLIPPipeline(
        prior=prior,
        prior_scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample_range=5.0
        ),
        **stages,
    )


def _karlo_variation():
    """Karlo's image variation, like kakaobrain/karlo-v1-alpha-image-variations: a CLIP image encoder's
    embedding instead of the prior's."""
    from diffusers import UnCLIPImageVariationPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    stages = _karlo_stages()
    torch.manual_seed(167)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=demo.HIDDEN, projection_dim=demo.HIDDEN, num_hidden_layers=1, num_attention_heads=4,
            image_size=32, intermediate_size=37, patch_size=8,
        )
    ).eval()  # fmt: skip
    feature_extractor = CLIPImageProcessor(crop_size=32, size=32)
    return UnCLIPImageVariationPipeline(image_encoder=image_encoder, feature_extractor=feature_extractor, **stages)


def _alt_diffusion():
    """AltDiffusion, like BAAI/AltDiffusion-m9: Stable Diffusion with a multilingual XLM-RoBERTa text encoder (the
    demo's UNet, VAE and safety checker)."""
    from diffusers import AltDiffusionPipeline, PNDMScheduler
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import (
        RobertaSeriesConfig,
        RobertaSeriesModelWithTransformation,
    )

    tokenizer = xlm_roberta_tokenizer()
    torch.manual_seed(168)
    text_encoder = RobertaSeriesModelWithTransformation(
        RobertaSeriesConfig(
            hidden_size=demo.HIDDEN, project_dim=demo.HIDDEN, intermediate_size=64, num_attention_heads=4,
            num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=80,
        )
    ).eval()  # fmt: skip
    return AltDiffusionPipeline(
        vae=demo._vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=demo._unet(),
        scheduler=PNDMScheduler.from_config(demo.SD15_SCHEDULER),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        requires_safety_checker=True,
    )


def _unidiffuser():
    """UniDiffuser, like thu-ml/unidiffuser-v1: one transformer over image latents, a CLIP image embedding and text
    latents at once, so it makes images from text, text from images (a GPT-2 caption decoder) or both."""
    from diffusers import DPMSolverMultistepScheduler, UniDiffuserModel, UniDiffuserPipeline, UniDiffuserTextDecoder
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from core.demo.families import clip_text

    clip_tokenizer, text_encoder = clip_text(181, projection=False)
    torch.manual_seed(182)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=demo.HIDDEN, projection_dim=demo.HIDDEN, num_hidden_layers=1, num_attention_heads=4,
            image_size=32, intermediate_size=37, patch_size=8,
        )
    ).eval()  # fmt: skip
    text_tokenizer = gpt2_tokenizer()
    caption_width = 16  # the text latents' width: the real one squeezes CLIP's 768 to 64 the same way
    torch.manual_seed(183)
    text_decoder = UniDiffuserTextDecoder(
        prefix_length=77, prefix_inner_dim=demo.HIDDEN, prefix_hidden_dim=caption_width,
        vocab_size=len(text_tokenizer), n_positions=160, n_embd=demo.HIDDEN, n_layer=1, n_head=4,
    ).eval()  # fmt: skip
    # GPT-2 ties its output layer to the token embedding; safetensors won't save one tensor twice, so the head gets
    # an equal copy (loading ties them again).
    head = text_decoder.transformer.lm_head
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    torch.manual_seed(184)
    unet = UniDiffuserModel(
        text_dim=caption_width, clip_img_dim=demo.HIDDEN, num_text_tokens=77, num_attention_heads=2,
        attention_head_dim=16, in_channels=4, out_channels=4, num_layers=3, norm_num_groups=16, sample_size=8,
        patch_size=2, activation_fn="gelu", norm_type="layer_norm", block_type="unidiffuser", pre_layer_norm=False,
        use_timestep_embedding=False, use_patch_pos_embed=False, ff_final_dropout=True,
    )  # fmt: skip
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", solver_order=3
    )
    return UniDiffuserPipeline(
        vae=demo._vae(),
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        clip_image_processor=CLIPImageProcessor(crop_size=32, size=32),
        clip_tokenizer=clip_tokenizer,
        text_decoder=text_decoder,
        text_tokenizer=text_tokenizer,
        unet=unet,
        scheduler=scheduler,
    )


def _karras_ve():
    """Stochastic Karras VE (unconditional, a second-order sampler that adds noise back at each step), an
    unconditional pixel UNet like diffusers' own test of it."""
    from diffusers import KarrasVePipeline, KarrasVeScheduler, UNet2DModel

    torch.manual_seed(185)
    unet = UNet2DModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=3, out_channels=3,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    # sigma_max 100 (the default, for trained weights) leaves a random UNet's samples far outside [-1, 1]: every
    # pixel clipped to one of 8 colours. A small range keeps the twin's images telling.
    return KarrasVePipeline(unet=unet, scheduler=KarrasVeScheduler(sigma_min=0.02, sigma_max=2.0))


STAGE_BUILDERS = {
    "ldm_text2img": _ldm_text2img,
    "ldm_superres": _ldm_superres,
    "ldm_uncond": _ldm_uncond,
    "if_superres": _if_superres,
    "shap_e_img2img": _shap_e_img2img,
    "vq_diffusion": _vq_diffusion,
    "karlo": _karlo,
    "karlo_variation": _karlo_variation,
    "alt_diffusion": _alt_diffusion,
    "unidiffuser": _unidiffuser,
    "karras_ve": _karras_ve,
}
