"""Tiny offline twins of the text-to-audio pipelines beyond AudioLDM that the Pipeline tab runs from their
signature: MusicLDM and AudioLDM 2.

Each loads as a main checkpoint (`demo-musicldm`, `demo-audioldm2`), laid out as the Hub checkpoint it stands for;
shapes follow diffusers' own tests (tests/pipelines/musicldm, tests/pipelines/audioldm2), kept tiny. Their
tokenizers (RoBERTa's byte-level BPE, T5's Unigram) are built offline with `tokenizers`: the real ones are Hub
downloads.
"""

from __future__ import annotations

import torch

from core.demo.tokenizers import roberta_tokenizer, t5_tokenizer

AUDIO_STAGES = {
    "musicldm": "text to music (AudioLDM's latents with a CLAP text-audio encoder), like ucsd-reach/musicldm",
    "audioldm2": "text to audio (CLAP and T5 encoders, a GPT-2 that writes the UNet's conditioning), like "
    "cvssp/audioldm2",
}


def _clap(tokenizer, seed: int, width: int, projection: int):
    """A CLAP text-audio model (both towers: the pipelines rank waveforms with the audio one), its text tower a
    RoBERTa over `tokenizer`'s ids, and the feature extractor that feeds its audio tower."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(seed)
    text = dict(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=37, num_attention_heads=1, num_hidden_layers=1,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        # RoBERTa's positions start after the padding id: 77 tokens take ids 2..78
        max_position_embeddings=tokenizer.pad_token_id + 80, layer_norm_eps=1e-5,
    )  # fmt: skip
    audio = dict(
        spec_size=8, window_size=4, num_mel_bins=8, intermediate_size=37, layer_norm_eps=1e-5, depths=[1, 1],
        num_attention_heads=[1, 1], num_hidden_layers=1, hidden_size=32, patch_embeds_hidden_size=16, patch_size=2,
        patch_stride=2, patch_embed_input_channels=4,
    )  # fmt: skip
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=projection)).eval()
    return model, ClapFeatureExtractor(feature_size=8, hop_length=7900)


def _audio_ldm_scheduler():
    """The DDIM scheduler of AudioLDM's successors: the original LDM audio betas (0.0015 to 0.0195)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
        steps_offset=1,
    )  # fmt: skip


def _musicldm():
    """MusicLDM: AudioLDM's architecture (the CLAP text embedding is the UNet's class input, concatenated to its
    time embedding) with a full CLAP model; the mel VAE and HiFi-GAN vocoder are the AudioLDM twin's."""
    from diffusers import MusicLDMPipeline, UNet2DConditionModel

    from core.demo.pipelines import _audioldm

    audioldm = _audioldm()
    tokenizer = roberta_tokenizer()
    text_encoder, feature_extractor = _clap(tokenizer, 171, width=8, projection=8)
    torch.manual_seed(172)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(8, 16),
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=8, class_embeddings_concat=True,
    )  # fmt: skip
    return MusicLDMPipeline(
        vae=audioldm.vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        feature_extractor=feature_extractor,
        unet=unet,
        scheduler=_audio_ldm_scheduler(),
        vocoder=audioldm.vocoder,
    )


def _audioldm2():
    """AudioLDM 2: the prompt through CLAP (its pooled embedding) and T5, both projected into a GPT-2 that writes
    8 hidden states; the UNet attends to those and to T5's states in turn. VAE and vocoder are the AudioLDM twin's."""
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.demo.image_families import T5_WIDTH, _t5_encoder
    from core.demo.pipelines import _audioldm

    audioldm = _audioldm()
    tokenizer = roberta_tokenizer()
    text_encoder, feature_extractor = _clap(tokenizer, 181, width=8, projection=16)
    tokenizer_2 = t5_tokenizer()
    tokenizer_2.model_max_length = 77  # as in diffusers' test; the real one is Flan-T5's 512
    text_encoder_2 = _t5_encoder(tokenizer_2, 182)
    gpt_width = 16
    torch.manual_seed(183)
    language_model = GPT2LMHeadModel(
        GPT2Config(
            n_embd=gpt_width,
            n_head=1,
            n_layer=1,
            vocab_size=64,
            n_ctx=99,
            n_positions=99,
            bos_token_id=63,
            eos_token_id=63,
        )
    ).eval()
    language_model.config.max_new_tokens = 8  # the real config says how many states the pipeline generates
    torch.manual_seed(184)
    projection_model = AudioLDM2ProjectionModel(
        text_encoder_dim=16, text_encoder_1_dim=T5_WIDTH, langauge_model_dim=gpt_width
    )
    torch.manual_seed(185)
    # Each transformer block: self-attention (None), cross-attention to GPT-2's states, then to T5's, as the real
    # UNet's [None, 768, 1024].
    cross = [None, gpt_width, T5_WIDTH]
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(cross, cross),
    )  # fmt: skip
    return AudioLDM2Pipeline(
        vae=audioldm.vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        projection_model=projection_model,
        language_model=language_model,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        feature_extractor=feature_extractor,
        unet=unet,
        scheduler=_audio_ldm_scheduler(),
        vocoder=audioldm.vocoder,
    )


AUDIO_STAGE_BUILDERS = {"musicldm": _musicldm, "audioldm2": _audioldm2}
