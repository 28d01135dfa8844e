"""Tiny offline twins of the checkpoints that tasks needing their own weights load beside the main one.

Each is written like `core.demo.checkpoint`: deterministic random weights, the folder layout of the Hub checkpoint
it stands for, saved by diffusers/transformers themselves (safetensors only). The text encoder, tokenizer and VAE
are the demo's own where the real checkpoint family shares them, so they are byte-identical to the demo's files.
`python -m core.demo.companions KIND DIR` writes one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from core.demo import checkpoint as demo
from core.demo.audio_stages import AUDIO_STAGE_BUILDERS, AUDIO_STAGES
from core.demo.blip_diffusion import BLIP, BLIP_AS_PUBLISHED, BLIP_BUILDERS
from core.demo.families import COMPANION_BUILDERS, FAMILIES, FAMILY_BUILDERS, REFINER
from core.demo.gemma_families import GEMMA_FAMILIES, GEMMA_FAMILY_BUILDERS
from core.demo.image_families import IMAGE_FAMILIES, IMAGE_FAMILY_BUILDERS
from core.demo.music_twins import MUSIC, MUSIC_AS_PUBLISHED, MUSIC_BUILDERS
from core.demo.pipelines import DIT_LABELS, PIPELINE_BUILDERS, PIPELINES
from core.demo.stages import STAGE_BUILDERS, STAGES
from core.demo.versatile import VERSATILE, VERSATILE_AS_PUBLISHED, VERSATILE_BUILDERS

COMPANIONS_FORMAT_VERSION = 3  # 3: the SD3 twin has two transformer blocks
COMPANIONS = {
    "inpaint": "SD 1.5 inpainting (9-channel UNet), like stable-diffusion-v1-5/stable-diffusion-inpainting",
    "depth": "SD 2 depth-to-image with a DPT depth estimator, like stabilityai/stable-diffusion-2-depth",
    "variation": "image variation with a CLIP image encoder, like lambdalabs/sd-image-variations-diffusers",
    "upscale_x4": "x4 image upscaler, like stabilityai/stable-diffusion-x4-upscaler",
    "upscale_x2": "x2 latent upscaler, like stabilityai/sd-x2-latent-upscaler",
    "ldm3d": "RGB + depth (LDM3D), like Intel/ldm3d",
    "motion_adapter": "AnimateDiff motion adapter, like guoyww/animatediff-motion-adapter-v1-5-2",
    "tiny_vae": "a tiny autoencoder (AutoencoderTiny, TAESD's layout) for previews and fast decodes, like "
    "madebyollin/taesd",
    "refiner": REFINER,
    "gligen": "GLIGEN (gated self-attention reads phrase boxes), like masterful/gligen-1-4-generation-text-box",
    "paint_by_example": "Paint by Example (CLIP image encoder, 9-channel UNet), like Fantasy-Studio/Paint-by-Example",
    "unclip": "Stable unCLIP (image embedding as class input), like stabilityai/stable-diffusion-2-1-unclip",
    "unclip_text2img": "Stable unCLIP text to image (a prior makes the embedding), like fusing/stable-unclip-2-1-l",
    "lcm": "an LCM checkpoint (guidance-embedding UNet, LCM scheduler), like SimianLuo/LCM_Dreamshaper_v7",
    "instruct": "InstructPix2Pix (8-channel UNet: latents and the input image's), like timbrooks/instruct-pix2pix",
    "controlnet": "ControlNet for the demo's UNet (SD 1.5 layout), like lllyasviel/control_v11p_sd15_canny",
    "controlnet_sdxl": "ControlNet for the SDXL twin's UNet, like diffusers/controlnet-canny-sdxl-1.0",
    "xs_base": "the demo with two layers per UNet block, as SD 1.5 has (ControlNet-XS's converter needs them)",
    "controlnet_xs": "ControlNet-XS for the xs_base twin's UNet, like UmerHA/Testing-ConrolNetXS-SD2.1-canny",
    "t2i_adapter": "T2I-Adapter for the demo's and the SDXL twin's UNet, like TencentARC/t2iadapter_canny_sd15v2",
    **FAMILIES,
    **IMAGE_FAMILIES,
    **PIPELINES,
    **STAGES,
    **AUDIO_STAGES,
    **GEMMA_FAMILIES,
    **BLIP,
    **VERSATILE,
    **MUSIC,
}
# The twins a companion kind offers offline, where it is not just `demo-<kind>`: either control slot takes any
# control module (ControlNet or T2I-Adapter) that fits the loaded checkpoint.
CONTROL_TWINS = ("demo-controlnet", "demo-controlnet-sdxl", "demo-t2i-adapter", "demo-controlnet-xs")
DEMO_CHOICES = {"controlnet": CONTROL_TWINS, "controlnet_2": CONTROL_TWINS}


def demo_choices(kind: str) -> tuple[str, ...]:
    """The offline twins offered for companion `kind`."""
    return DEMO_CHOICES.get(kind, (f"demo-{kind.replace('_', '-')}",))


_unet = demo.unet_with  # the demo's UNet with changes, freshly seeded


def _sd_parts() -> dict:
    tokenizer = demo._tokenizer()
    return {"tokenizer": tokenizer, "text_encoder": demo._text_encoder(tokenizer), "vae": demo._vae()}


def _scheduler():
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config(demo.SD15_SCHEDULER)


def _inpaint():
    from diffusers import StableDiffusionInpaintPipeline

    return StableDiffusionInpaintPipeline(
        **_sd_parts(),
        unet=_unet(10, in_channels=9),
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
    )


def _lcm():
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    # The guidance scale is an embedding of the UNet's time input (time_cond_proj_dim), as in LCM checkpoints.
    scheduler = LCMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=True, steps_offset=1
    )
    return LatentConsistencyModelPipeline(
        **_sd_parts(),
        unet=_unet(34, time_cond_proj_dim=32),
        scheduler=scheduler,
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        requires_safety_checker=True,
    )


def _instruct():
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    # timbrooks/instruct-pix2pix ships Euler a with SD 1.5's betas.
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    return StableDiffusionInstructPix2PixPipeline(
        **_sd_parts(),
        unet=_unet(33, in_channels=8),
        scheduler=scheduler,
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        requires_safety_checker=True,
    )


def _paint_by_example():
    from diffusers import PaintByExamplePipeline
    from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
    from transformers import CLIPVisionConfig

    torch.manual_seed(36)
    encoder = PaintByExampleImageEncoder(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=demo.HIDDEN,
            num_hidden_layers=5,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        ),
        proj_size=demo.HIDDEN,
    ).eval()
    # Its UNet takes the masked image and the mask beside the latents, like an inpainting one.
    return PaintByExamplePipeline(
        vae=demo._vae(),
        image_encoder=encoder,
        unet=_unet(37, in_channels=9),
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
    )


def _unclip_text2img():
    from diffusers import DDPMScheduler, PriorTransformer, StableUnCLIPPipeline
    from transformers import CLIPTextModelWithProjection

    # The prior turns the prompt into a CLIP image embedding; the decoder is the unCLIP UNet of _unclip's layout.
    variation = _unclip()
    tokenizer = demo._tokenizer()
    config = demo._text_encoder(tokenizer).config
    config.projection_dim = demo.HIDDEN  # the prior's text embedding is the size of the image embedding
    torch.manual_seed(43)
    prior_text_encoder = CLIPTextModelWithProjection(config).eval()
    torch.manual_seed(44)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=demo.HIDDEN, num_layers=1)
    return StableUnCLIPPipeline(
        prior_tokenizer=tokenizer,
        prior_text_encoder=prior_text_encoder,
        prior=prior,
        prior_scheduler=DDPMScheduler(
            variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample=True,
            clip_sample_range=5.0, beta_schedule="squaredcos_cap_v2",
        ),
        image_normalizer=variation.image_normalizer,
        image_noising_scheduler=variation.image_noising_scheduler,
        tokenizer=variation.tokenizer,
        text_encoder=variation.text_encoder,
        unet=variation.unet,
        scheduler=variation.scheduler,
        vae=variation.vae,
    )  # fmt: skip


def _unclip():
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(38)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=demo.HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    # The UNet takes the (noised) image embedding and the noise level's embedding as a class embedding.
    unet = _unet(39, class_embed_type="projection", projection_class_embeddings_input_dim=2 * demo.HIDDEN)
    parts = _sd_parts()
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=demo._feature_extractor(),
        image_encoder=encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=demo.HIDDEN),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        vae=parts["vae"],
    )


def _gligen():
    from diffusers import StableDiffusionGLIGENPipeline

    # Gated self-attention layers and the phrase-and-box projection ("position net") beside the demo's UNet. Their
    # gates start closed (tanh(0) = 0) as training starts them; a trained checkpoint's are open, and a twin left
    # closed would ignore its boxes.
    unet = _unet(40, attention_type="gated")
    for name, gate in unet.named_parameters():
        if name.endswith(("alpha_attn", "alpha_dense")):
            torch.nn.init.constant_(gate, 1.0)
    return StableDiffusionGLIGENPipeline(
        **_sd_parts(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        requires_safety_checker=True,
    )


def _depth():
    from diffusers import StableDiffusionDepth2ImgPipeline
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(11)
    estimator = DPTForDepthEstimation(
        DPTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            backbone_out_indices=(0, 1, 2, 3),
            neck_hidden_sizes=[16, 16, 32, 32],
            fusion_hidden_size=16,
            is_hybrid=False,
        )
    ).eval()
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=1)
    return StableDiffusionDepth2ImgPipeline(
        **_sd_parts(),
        unet=_unet(12, in_channels=5),
        scheduler=_scheduler(),
        depth_estimator=estimator,
        feature_extractor=processor,
    )


def _variation():
    from diffusers import StableDiffusionImageVariationPipeline
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(13)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=demo.HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    return StableDiffusionImageVariationPipeline(
        vae=demo._vae(),
        image_encoder=encoder,
        unet=_unet(14),
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
    )


def _upscale_x4():
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    torch.manual_seed(15)
    # Three levels: the x4 upscaler's VAE has a scale factor of 4, which is what makes the output 4x the input.
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        scaling_factor=0.08333,
    )
    # num_class_embeds: the UNet embeds the noise level (0..max_noise_level) as a class label.
    unet = _unet(16, in_channels=7, num_class_embeds=1000)
    parts = _sd_parts()
    return StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=unet,
        low_res_scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.0001,
            beta_end=0.02,
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
        ),
        # The real x4 upscaler ships no safety checker (its pipeline expects a three-output one).
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        max_noise_level=350,
    )


def _upscale_x2():
    from diffusers import EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline, UNet2DConditionModel

    torch.manual_seed(17)
    # The K-diffusion UNet of the latent upscaler, at the smallest size diffusers' own tests use.
    unet = UNet2DConditionModel(
        act_fn="gelu",
        attention_head_dim=8,
        norm_num_groups=None,
        block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=160,
        conv_in_kernel=1,
        conv_out_kernel=1,
        cross_attention_dim=demo.HIDDEN,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        in_channels=8,
        mid_block_type=None,
        only_cross_attention=False,
        out_channels=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
    )
    parts = _sd_parts()
    return StableDiffusionLatentUpscalePipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=unet,
        scheduler=EulerDiscreteScheduler(prediction_type="sample"),
    )


def _ldm3d():
    from diffusers import AutoencoderKL, StableDiffusionLDM3DPipeline

    torch.manual_seed(18)
    # Six channels in and out: RGB plus depth packed into RGB, decoded together, as Intel/ldm3d and diffusers'
    # own tests do. The 4-channel layout (Intel/ldm3d-4c) fails in diffusers 0.42's depth post-processing under
    # Pillow 12 (a (H, W, 1) array handed to Image.fromarray(mode="I;16")).
    config = {**dict(demo._vae().config), "in_channels": 6, "out_channels": 6}
    parts = _sd_parts()
    return StableDiffusionLDM3DPipeline(
        vae=AutoencoderKL.from_config(config),
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=_unet(19),
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        image_encoder=None,
        requires_safety_checker=True,
    )


def _motion_adapter():
    from diffusers import MotionAdapter

    torch.manual_seed(20)
    unet = demo._unet().config
    return MotionAdapter(
        block_out_channels=tuple(unet.block_out_channels),
        motion_layers_per_block=unet.layers_per_block,
        motion_norm_num_groups=16,
        motion_num_attention_heads=2,
        motion_max_seq_length=32,
    )


def _tiny_vae():
    """TAESD's layout (an 8x autoencoder on 4-channel latents, no scaling factor) with 8 channels and one block per
    stage instead of 64 and three: a few kB, decoding the demo's latents to pictures of the image's size."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(21)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )


def _random_control_outputs(module: torch.nn.Module) -> None:
    """A trained ControlNet's output convolutions are far from the zeros it starts training with; a twin left at
    zeros would change no image, so tests could not tell a control run from a plain one."""
    for conv in (*module.controlnet_down_blocks, module.controlnet_mid_block):
        torch.nn.init.normal_(conv.weight, std=0.05)
        torch.nn.init.zeros_(conv.bias)


def _controlnet():
    from diffusers import ControlNetModel

    torch.manual_seed(30)
    # Four embedding levels: the condition image is brought down 8x, to the latents' size.
    net = ControlNetModel.from_unet(
        demo._unet(), load_weights_from_unet=False, conditioning_embedding_out_channels=(8, 8, 16, 16)
    )
    _random_control_outputs(net)
    return net


def _controlnet_sdxl():
    from diffusers import ControlNetModel

    from core.demo.families import sdxl_unet

    torch.manual_seed(31)
    net = ControlNetModel.from_unet(
        sdxl_unet(), load_weights_from_unet=False, conditioning_embedding_out_channels=(8, 8, 16, 16)
    )
    _random_control_outputs(net)
    return net


def _xs_unet():
    """The demo's UNet with two layers per block (SD 1.5 has two; ControlNet-XS's converter needs them)."""
    return _unet(41, layers_per_block=2)


def _xs_base():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **_sd_parts(),
        unet=_xs_unet(),
        scheduler=_scheduler(),
        safety_checker=demo._safety_checker(False),
        feature_extractor=demo._feature_extractor(),
        requires_safety_checker=True,
    )


def _controlnet_xs():
    from diffusers import ControlNetXSAdapter

    torch.manual_seed(42)
    adapter = ControlNetXSAdapter.from_unet(
        _xs_unet(), size_ratio=0.5, learn_time_embedding=True, conditioning_embedding_out_channels=(8, 8, 16, 16)
    )
    # Its connections to and from the base UNet start at zero, as for a ControlNet; a trained one's are not.
    for name, weight in adapter.named_parameters():
        if any(part in name for part in ("ctrl_to_base", "base_to_ctrl", "control_to_base", "conv_out")):
            torch.nn.init.normal_(weight, std=0.05)
    return adapter


def _t2i_adapter():
    from diffusers import T2IAdapter

    torch.manual_seed(32)
    # The XL layout: its features meet a UNet whose first level has no cross-attention (the demo's and the SDXL
    # twin's do, as SDXL's own); SD 1.5's full_adapter expects cross-attention at every level but the last.
    return T2IAdapter(
        in_channels=3,
        channels=list(demo._unet().config.block_out_channels),
        num_res_blocks=1,
        downscale_factor=16,
        adapter_type="full_adapter_xl",
    )


_BUILDERS = {
    "controlnet": _controlnet,
    "controlnet_sdxl": _controlnet_sdxl,
    "t2i_adapter": _t2i_adapter,
    "xs_base": _xs_base,
    "controlnet_xs": _controlnet_xs,
    "inpaint": _inpaint,
    "instruct": _instruct,
    "paint_by_example": _paint_by_example,
    "gligen": _gligen,
    "unclip": _unclip,
    "unclip_text2img": _unclip_text2img,
    "lcm": _lcm,
    "depth": _depth,
    "variation": _variation,
    "upscale_x4": _upscale_x4,
    "upscale_x2": _upscale_x2,
    "ldm3d": _ldm3d,
    "motion_adapter": _motion_adapter,
    "tiny_vae": _tiny_vae,
    **COMPANION_BUILDERS,
    **FAMILY_BUILDERS,
    **IMAGE_FAMILY_BUILDERS,
    **PIPELINE_BUILDERS,
    **STAGE_BUILDERS,
    **AUDIO_STAGE_BUILDERS,
    **GEMMA_FAMILY_BUILDERS,
    **BLIP_BUILDERS,
    **VERSATILE_BUILDERS,
    **MUSIC_BUILDERS,
}


def write_companion(kind: str, path: str | os.PathLike) -> Path:
    """Write the tiny `kind` companion checkpoint to `path` and return it."""
    if kind not in _BUILDERS:
        raise ValueError(f"Unknown companion {kind!r}; choose one of {', '.join(COMPANIONS)}.")
    path = Path(path)
    _BUILDERS[kind]().save_pretrained(path, safe_serialization=True)
    _drop_pil_suffix(path)
    for component, declared in AS_PUBLISHED.get(kind, {}).items():
        _as_published(path, component, declared)
    return path


# model_index.json entries the published checkpoint writes differently from what save_pretrained writes today.
# DiT's checkpoints keep ImageNet's label names in model_index.json (its pipeline takes them but saves no copy).
AS_PUBLISHED = {
    "paint_by_example": {"image_encoder": ["paint_by_example", "PaintByExampleImageEncoder"]},
    "dit": {"id2label": {str(i): name for i, name in DIT_LABELS.items()}},
    # Wuerstchen's and Stable Cascade's repos name their models' library `wuerstchen` (now under deprecated/).
    "wuerstchen": {
        "vqgan": ["wuerstchen", "PaellaVQModel"],
        "decoder": ["wuerstchen", "WuerstchenDiffNeXt"],
        "prior_prior": ["wuerstchen", "WuerstchenPrior"],
    },
    "cascade": {"vqgan": ["wuerstchen", "PaellaVQModel"]},
    "vq_diffusion": {
        "learned_classifier_free_sampling_embeddings": ["vq_diffusion", "LearnedClassifierFreeSamplingEmbeddings"]
    },
    "karlo": {"text_proj": ["unclip", "UnCLIPTextProjModel"]},
    "karlo_variation": {"text_proj": ["unclip", "UnCLIPTextProjModel"]},
    # BAAI/AltDiffusion-m9 names its text encoder's library `alt_diffusion` (now under deprecated/).
    "alt_diffusion": {"text_encoder": ["alt_diffusion", "RobertaSeriesModelWithTransformation"]},
    # diffusers 0.42 saves Karras VE's scheduler as library `deprecated`, which it can't load back; checkpoints
    # saved before the move (and this twin) name `diffusers`, which still exports the class.
    "karras_ve": {"scheduler": ["diffusers", "KarrasVeScheduler"]},
    # cvssp/audioldm2 declares its language model as the base GPT2Model, which can't generate under transformers 5
    # (the studio and its snippet load it as GPT2LMHeadModel: core.checkpoints.compat).
    "audioldm2": {"language_model": ["transformers", "GPT2Model"]},
    **BLIP_AS_PUBLISHED,
    **VERSATILE_AS_PUBLISHED,
    **MUSIC_AS_PUBLISHED,
}


def _as_published(path: Path, component: str, declared: list[str]) -> None:
    """Declare `component` in model_index.json as the published checkpoint does (Fantasy-Studio/Paint-by-Example
    names its encoder's library `paint_by_example`, a module diffusers has since moved), so the twin takes the
    same loading path."""
    import json

    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text())
    index[component] = declared
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _drop_pil_suffix(path: Path) -> None:
    """Without torchvision, transformers 5 saves image processors as `<Name>Pil`; Hub checkpoints say `<Name>`."""
    import json

    config_file = path / "feature_extractor" / "preprocessor_config.json"
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    saved = config.get("image_processor_type", "")
    if not saved.endswith("Pil"):  # not an image processor (CLAP's audio feature extractor), or already right
        return
    name = saved.removesuffix("Pil")
    config["image_processor_type"] = name
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text())
    index["feature_extractor"] = [index["feature_extractor"][0], name]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def companion_path(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The `kind` companion's folder, written on first use (into a temporary folder, then renamed into place)."""
    if kind not in _BUILDERS:
        raise ValueError(f"Unknown companion {kind!r}; choose one of {', '.join(COMPANIONS)}.")
    root = Path(cache_dir) if cache_dir is not None else demo.default_cache_dir()
    target = root / f"demo-{kind}-v{demo.DEMO_FORMAT_VERSION}.{COMPANIONS_FORMAT_VERSION}"
    return demo.write_once(target, lambda folder: write_companion(kind, folder))


def main(argv: list[str] | None = None) -> int:
    """`python -m core.demo.companions KIND DIR`."""
    parser = argparse.ArgumentParser(prog="python -m core.demo.companions", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=list(COMPANIONS))
    parser.add_argument("dir")
    args = parser.parse_args(argv)
    print(write_companion(args.kind, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
