"""Tiny offline twins of pipelines that no task spec serves: the Pipeline tab runs them from their signature.

Each loads as a main checkpoint (`demo-ddpm`, `demo-dit`, `demo-dance-diffusion`, `demo-audioldm`,
`demo-text-to-video`, `demo-shap-e`, `demo-marigold-depth`) and stands for a published one: an unconditional image
model, a class-conditional transformer, two audio models (unconditional and from text), a text-to-video model, a
text-to-3D model and an image-to-depth model. Shapes follow diffusers' own tests of these pipelines
(tests/pipelines/*), kept tiny.
"""

from __future__ import annotations

import torch

from core.demo import checkpoint as demo

PIPELINES = {
    "ddpm": "unconditional DDPM (a pixel-space UNet, no text), like google/ddpm-cat-256",
    "dit": "class-conditional DiT (a transformer over VAE latents, ImageNet labels), like facebook/DiT-XL-2-256",
    "dance_diffusion": "unconditional audio (a 1-D UNet over stereo samples), like harmonai/maestro-150k",
    "audioldm": "text to audio (latents of a mel spectrogram, a HiFi-GAN vocoder), like cvssp/audioldm-s-full-v2",
    "text_to_video": "text to video (a 3-D UNet over frame latents), like ali-vilab/text-to-video-ms-1.7b",
    "shap_e": "text to 3D (a prior over implicit-function latents, rendered turning), like openai/shap-e",
    "marigold_depth": "image to depth (Marigold: image latents beside the noise), like prs-eth/marigold-depth-v1-1",
}
# A few of ImageNet's classes by their ids there, as DiT's checkpoints name them; the twin knows only these.
DIT_LABELS = {
    0: "tench, Tinca tinca",
    1: "goldfish, Carassius auratus",
    2: "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
    3: "tiger shark, Galeocerdo cuvieri",
    4: "hammerhead, hammerhead shark",
    5: "electric ray, crampfish, numbfish, torpedo",
    6: "stingray",
    7: "cock",
    8: "hen",
    9: "ostrich, Struthio camelus",
}


def _ddpm():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(41)
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    # google/ddpm-cat-256's scheduler: linear betas over 1000 steps, clipped samples
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    return DDPMPipeline(unet=unet, scheduler=scheduler)


def _dit():
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(42)
    transformer = DiTTransformer2DModel(
        sample_size=16,  # 16 latents x 8 = 128 px
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        in_channels=4,
        out_channels=8,  # noise and variance, as DiT learns both
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,  # DiTPipeline takes id 1000 as the unconditional class: ImageNet's 1000 classes
        norm_type="ada_norm_zero",
        norm_elementwise_affine=False,
    )
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    return DiTPipeline(transformer=transformer, vae=demo._vae(), scheduler=scheduler, id2label=dict(DIT_LABELS))


def _dance_diffusion():
    from diffusers import DanceDiffusionPipeline, IPNDMScheduler, UNet1DModel

    torch.manual_seed(43)
    unet = UNet1DModel(
        block_out_channels=(32, 32, 64),  # as diffusers' test: the first two levels are one width
        extra_in_channels=64,  # the Fourier time features beside the samples: half the first width each (sin, cos)
        sample_size=4096,  # the default length: 4096 samples at 16 kHz, a quarter of a second
        sample_rate=16_000,
        in_channels=2,
        out_channels=2,
        flip_sin_to_cos=True,
        use_timestep_embedding=False,
        time_embedding_type="fourier",
        mid_block_type="UNetMidBlock1D",
        down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
        up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
    )
    return DanceDiffusionPipeline(unet=unet, scheduler=IPNDMScheduler())


def _audioldm():
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    tokenizer = demo._tokenizer()  # the checkpoint has a RoBERTa tokenizer; the pipeline only asks for ids and a mask
    torch.manual_seed(47)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(8, 16),
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=8, class_embeddings_concat=True,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )  # fmt: skip
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=len(tokenizer), hidden_size=8, intermediate_size=37, num_attention_heads=1, num_hidden_layers=1,
            projection_dim=8, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            # RoBERTa-style positions start after the padding id (ours is near the vocabulary's end): 77 more
            max_position_embeddings=tokenizer.pad_token_id + 80,
        )
    ).eval()  # fmt: skip
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[2, 2],
            upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
            normalize_before=False,
        )
    ).eval()  # fmt: skip
    with torch.no_grad():  # a random tiny vocoder whispers (1e-5): louder, so 16-bit samples keep the differences
        vocoder.conv_post.weight.mul_(2e4)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    return AudioLDMPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, vocoder=vocoder
    )


def _text_to_video():
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    tokenizer = demo._tokenizer()
    torch.manual_seed(45)
    unet = UNet3DConditionModel(
        sample_size=8,  # 8 latents x 8 = 64 px frames
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=demo.HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    return TextToVideoSDPipeline(
        vae=demo._vae(), text_encoder=demo._text_encoder(tokenizer), tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )


def marching_cubes_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Marching-cubes tables in the layout of diffusers' Shap-E `MeshDecoder`: for each of the 256 inside/outside
    patterns of a cube's corners, up to 5 triangles (`cases`, [256, 5, 3], as indices of the cube's 12 edges) and
    which of them exist (`masks`, [256, 5]).

    Built rather than copied (the classic table is a 256-row listing): on each face of the cube the crossing edges
    are joined in pairs, the pairs chained into loops round the cube, and each loop fanned into triangles, turned
    to face outwards. A face with two inside corners on a diagonal cuts each off on its own; both cubes sharing the
    face decide alike, so the surface stays closed (a sphere's mesh has every edge on exactly two triangles, all
    turned one way: tests/core/test_pipeline_tab.py)."""
    import itertools

    def corner(x: int, y: int, z: int) -> int:  # the decoder's bit for a corner: x + 2y + 4z
        return x + 2 * y + 4 * z

    # Its edges: 4 along x (at (y, z) = (0, 0), (1, 0), (0, 1), (1, 1)), then 4 along y (at (x, z)), 4 along z.
    ends = [(0, 0), (1, 0), (0, 1), (1, 1)]
    edges = [(corner(0, a, b), corner(1, a, b)) for a, b in ends]
    edges += [(corner(a, 0, b), corner(a, 1, b)) for a, b in ends]
    edges += [(corner(a, b, 0), corner(a, b, 1)) for a, b in ends]
    edge_of = {frozenset(e): i for i, e in enumerate(edges)}
    where = {corner(*p): torch.tensor(p, dtype=torch.float32) for p in itertools.product((0, 1), repeat=3)}
    faces = []  # each face's corners in order round it
    for axis in range(3):
        u, v = (a for a in range(3) if a != axis)
        for side in (0, 1):
            ring = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = [0, 0, 0]
                p[axis], p[u], p[v] = side, du, dv
                ring.append(corner(*p))
            faces.append(ring)
    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    for case in range(256):
        inside = {c for c in range(8) if case >> c & 1}
        links: dict[int, list[int]] = {}
        for ring in faces:
            sides = [edge_of[frozenset((ring[i - 1], ring[i]))] for i in range(4)]  # side i ends at corner i
            crossing = [sides[i] for i in range(4) if (ring[i - 1] in inside) != (ring[i] in inside)]
            if len(crossing) == 4:  # diagonal inside corners: cut each off on its own
                pairs = [(sides[i], sides[(i + 1) % 4]) for i in range(4) if ring[i] in inside]
            else:
                pairs = [tuple(crossing)] if crossing else []
            for a, b in pairs:
                links.setdefault(a, []).append(b)
                links.setdefault(b, []).append(a)
        triangles, seen = [], set()
        for start in links:
            if start in seen:
                continue
            loop, previous = [start], None
            seen.add(start)
            while True:
                here = loop[-1]
                following = next(n for n in links[here] if n != previous)
                if following == start:
                    break
                previous = here
                loop.append(following)
                seen.add(following)
            triangles += [[loop[0], loop[i], loop[i + 1]] for i in range(1, len(loop) - 1)]
        for k, triangle in enumerate(triangles):
            points = [(where[edges[e][0]] + where[edges[e][1]]) / 2 for e in triangle]
            normal = torch.linalg.cross(points[1] - points[0], points[2] - points[0])
            # outwards: from each crossing edge's inside end to its outside end
            outwards = sum(
                where[b] - where[a] if a in inside else where[a] - where[b] for a, b in map(edges.__getitem__, triangle)
            )
            if torch.dot(normal, outwards) < 0:
                triangle[1], triangle[2] = triangle[2], triangle[1]
            cases[case, k] = torch.tensor(triangle)
            masks[case, k] = True
    return cases, masks


def shap_e_renderer():
    """The Shap-E twins' renderer (an implicit-function MLP made from the latents, and the mesh decoder)."""
    from diffusers.pipelines.shap_e import ShapERenderer

    renderer = ShapERenderer(
        param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16, d_hidden=8, n_output=12,
        background=(0.1, 0.1, 0.1),
    )  # fmt: skip
    # The mesh decoder's marching-cubes tables are buffers the real checkpoint carries (zeros until loaded).
    cases, masks = marching_cubes_tables()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    with torch.no_grad():
        # Random weights make a signed distance field that changes sign between neighbouring grid points (a mesh
        # of millions of faces). The latent-made first layer reads only the position and its three lowest frequencies
        # here, so the field is smooth; the last layer's distance is centred so the surface crosses the volume.
        first = renderer.params_proj.projections["nerstf__mlp__0__weight"]
        smooth = torch.zeros(first.channels, dtype=torch.bool)
        smooth[:12] = smooth[48:57] = True  # x, y, z; sin and cos of each at scales 1, 2 and 4 (posenc_nerf)
        first.norm.weight[~smooth] = 0
        first.norm.bias[~smooth] = 0
        first.proj.bias.view(first.vectors, first.channels)[:, ~smooth] = 0
        renderer.mlp.mlp[-1].bias[0] -= 0.28
    return renderer


def shap_e_scheduler():
    """openai/shap-e's scheduler."""
    from diffusers import HeunDiscreteScheduler

    return HeunDiscreteScheduler(
        beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample", use_karras_sigmas=True,
        clip_sample=True, clip_sample_range=1.0,
    )  # fmt: skip


def _shap_e():
    from diffusers import PriorTransformer, ShapEPipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = demo._tokenizer()
    torch.manual_seed(46)
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=16, projection_dim=16, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()  # fmt: skip
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=16, embedding_dim=16, num_embeddings=32, embedding_proj_dim=16,
        time_embed_dim=64, num_layers=1, clip_embed_dim=32, additional_embeddings=0, time_embed_act_fn="gelu",
        norm_in_type="layer", encoder_hid_proj_type=None, added_emb_type=None,
    )  # fmt: skip
    return ShapEPipeline(
        prior=prior,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        shap_e_renderer=shap_e_renderer(),
        scheduler=shap_e_scheduler(),
    )


def _marigold_depth():
    from diffusers import LCMScheduler, MarigoldDepthPipeline

    tokenizer = demo._tokenizer()
    # Marigold's UNet reads the image's latents beside the noisy depth latents: 8 input channels.
    scheduler = LCMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        set_alpha_to_one=False,
        steps_offset=1,
        clip_sample=False,
        thresholding=False,
        timestep_spacing="trailing",
    )
    return MarigoldDepthPipeline(
        unet=demo.unet_with(44, in_channels=8),
        vae=demo._vae(),
        scheduler=scheduler,
        text_encoder=demo._text_encoder(tokenizer),
        tokenizer=tokenizer,
        prediction_type="depth",
        scale_invariant=True,
        shift_invariant=True,
        default_denoising_steps=4,
        default_processing_resolution=256,
    )


PIPELINE_BUILDERS = {
    "ddpm": _ddpm,
    "dit": _dit,
    "dance_diffusion": _dance_diffusion,
    "text_to_video": _text_to_video,
    "audioldm": _audioldm,
    "shap_e": _shap_e,
    "marigold_depth": _marigold_depth,
}
