"""The offline demo checkpoint: a tiny Stable Diffusion 1.5 with random weights, written deterministically.

No Stable Diffusion weights ship on PyPI and the test machines have no network, so the project writes its own
checkpoint: the real SD 1.5 folder layout (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
`scheduler/`, `safety_checker/`, `feature_extractor/`), SD 1.5's scheduler config, `fp16` weight files for every
model component and `non_ema` files for the UNet, all saved by diffusers and transformers themselves. Its images
are noise; it exists so that every loading path a real checkpoint takes can run anywhere in seconds.

The safety checker never flags an image. To get one that flags every image (for tests of the flagged path), write
the checkpoint with `write_demo_checkpoint(path, flag_all=True)` or `python -m core.demo.checkpoint DIR --flag-all`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

DEMO_FORMAT_VERSION = 2
HIDDEN = 32  # text encoder width = UNet cross-attention width
_SAFETY_IMAGE_SIZE = 32
# SD 1.5's scheduler, exactly: schedulers built from a config unlike it would behave unlike a real checkpoint's.
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
    clip_sample=False,
    prediction_type="epsilon",
    trained_betas=None,
)


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _tokenizer():
    """A byte-level CLIP BPE tokenizer with no merges: every character is a token, as the real one falls back to."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # model_max_length is not implied by the vocab: without it truncation overflows the 77 position embeddings.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    _seeded(1)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=HIDDEN,
    )
    return CLIPTextModel(config).eval()


def _unet():
    from diffusers import UNet2DConditionModel

    _seeded(2)
    return UNet2DConditionModel(
        sample_size=64,  # 64 latents x 8 = SD 1.5's 512 px
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        # Attention only at the lower level, as in diffusers' own tiny test UNets: 4096-token self-attention at
        # the top level made a 512 px demo image take seconds for nothing a test could see.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def unet_with(seed: int, **changes):
    """The demo's UNet architecture with `changes` (e.g. more input channels), freshly seeded."""
    from diffusers import UNet2DConditionModel

    # Without `_use_default_values`: from_config would keep the defaults of the keys it lists, over `changes`
    # (time_cond_proj_dim, num_class_embeds were silently dropped before format 2).
    config = {k: v for k, v in dict(_unet().config).items() if k != "_use_default_values"}
    config.update(changes)
    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(config)


def _vae():
    from diffusers import AutoencoderKL

    _seeded(3)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16, 32, 32),  # four levels: the VAE scale factor is 8, as in SD 1.5
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=512,
        scaling_factor=0.18215,
    )


def _safety_checker(flag_all: bool):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    _seeded(4)
    config = CLIPConfig(
        text_config=dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=_SAFETY_IMAGE_SIZE,
            patch_size=8,
        ),
        projection_dim=HIDDEN,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    # An image is flagged when cosine similarity - threshold (+ a small adjustment) > 0. Cosine similarity lies in
    # [-1, 1], so a threshold of 1e4 never flags and -1e4 always does, whatever the random embeddings are.
    threshold = -1e4 if flag_all else 1e4
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    return checker


def _feature_extractor():
    from transformers import CLIPImageProcessor

    size = _SAFETY_IMAGE_SIZE
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def build_pipeline(flag_all: bool = False):
    """The demo pipeline in memory, float32, default (EMA) weights."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    tokenizer = _tokenizer()
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=_unet(),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=_safety_checker(flag_all),
        feature_extractor=_feature_extractor(),
        requires_safety_checker=True,
    )


def _copy_weight_files(src: Path, dst: Path, variant: str, components: list[str]) -> None:
    """Copy only the `*.{variant}.safetensors` files: configs stay those of the default weights, as on the Hub."""
    for component in components:
        for f in (src / component).glob(f"*.{variant}.safetensors"):
            shutil.copy2(f, dst / component / f.name)


def _make_true_to_sd15(path: Path) -> None:
    """Without torchvision, transformers 5 saves the feature extractor as `CLIPImageProcessorPil`; real SD 1.5
    checkpoints say `CLIPImageProcessor`, and loading must be tested against what they say."""
    config_file = path / "feature_extractor" / "preprocessor_config.json"
    config = json.loads(config_file.read_text())
    config["image_processor_type"] = "CLIPImageProcessor"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_demo_checkpoint(path: str | os.PathLike, *, flag_all: bool = False) -> Path:
    """Write the tiny SD 1.5-layout demo checkpoint to `path` (created) and return it."""
    path = Path(path)
    pipe = build_pipeline(flag_all)
    pipe.save_pretrained(path, safe_serialization=True)
    model_components = ["unet", "vae", "text_encoder", "safety_checker"]
    with tempfile.TemporaryDirectory() as tmp:
        pipe.to(torch.float16).save_pretrained(Path(tmp) / "fp16", variant="fp16", safe_serialization=True)
        _copy_weight_files(Path(tmp) / "fp16", path, "fp16", model_components)
        pipe.to(torch.float32)
        # Non-EMA weights: the same UNet, a little off, so a test can tell which file was loaded.
        _seeded(5)
        with torch.no_grad():
            for p in pipe.unet.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        pipe.unet.save_pretrained(Path(tmp) / "non_ema" / "unet", variant="non_ema", safe_serialization=True)
        _copy_weight_files(Path(tmp) / "non_ema", path, "non_ema", ["unet"])
    _make_true_to_sd15(path)
    return path


def default_cache_dir() -> Path:
    """$DIFFUSION_STUDIO_CACHE, else ~/.cache/diffusion-studio."""
    return Path(os.environ.get("DIFFUSION_STUDIO_CACHE") or Path.home() / ".cache" / "diffusion-studio")


def demo_checkpoint_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The demo checkpoint's folder, written on first use."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return write_once(root / f"demo-sd15-v{DEMO_FORMAT_VERSION}", write_demo_checkpoint)


def write_once(target: Path, write: Callable[[Path], object]) -> Path:
    """`target`, written by `write(folder)` if it isn't there yet.

    Written into a temporary folder and renamed into place, so a crash or a second process never leaves a
    half-written checkpoint where the first looks for it.
    """
    if target.is_dir() and any(target.iterdir()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(tmp / "ckpt")
        try:
            os.rename(tmp / "ckpt", target)
        except OSError:
            if not target.is_dir():  # not another process winning the race: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m core.demo.checkpoint DIR [--flag-all]`."""
    parser = argparse.ArgumentParser(prog="python -m core.demo.checkpoint", description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="folder to write the checkpoint into")
    parser.add_argument("--flag-all", action="store_true", help="a safety checker that flags every image")
    args = parser.parse_args(argv)
    print(write_demo_checkpoint(args.dir, flag_all=args.flag_all))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
