"""Write a diffusers SD 1.x folder as one original-layout ("LDM", as the web UIs share them) `.safetensors` file.

diffusers only converts the other way (`from_single_file`); the tests need such a file without a download, so this
inverts diffusers' own key mapping (diffusers.loaders.single_file_utils) for the UNet, the VAE and the CLIP text
encoder. `write_ldm_checkpoint` checks itself: diffusers' converters must turn the file back into the folder's exact
weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors.torch import load_file, save_file

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET.get(head, head)}.{tail}"


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    per = config["layers_per_block"] + 1  # resnets per level in the original layout (plus a down/up sampler)
    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    up_attention = {int(k.split(".")[1]) for k in state if re.match(r"up_blocks\.\d+\.attentions\.", k)}
    rules = [
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda b, i, r: f"input_blocks.{1 + b * per + i}.0.{_resnet(r)}"),
        (r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", lambda b, i, r: f"input_blocks.{1 + b * per + i}.1.{r}"),
        (r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", lambda b, r: f"input_blocks.{(b + 1) * per}.0.op.{r}"),
        (r"mid_block\.resnets\.(\d+)\.(.*)", lambda i, r: f"middle_block.{2 * i}.{_resnet(r)}"),
        (r"mid_block\.attentions\.0\.(.*)", lambda r: f"middle_block.1.{r}"),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", lambda b, i, r: f"output_blocks.{b * per + i}.0.{_resnet(r)}"),
        (r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", lambda b, i, r: f"output_blocks.{b * per + i}.1.{r}"),
        (
            r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)",
            lambda b, r: f"output_blocks.{b * per + per - 1}.{2 if b in up_attention else 1}.conv.{r}",
        ),
    ]
    out = {}
    for key, value in state.items():
        if key in top:
            out["model.diffusion_model." + top[key]] = value
            continue
        for pattern, name in rules:
            match = re.fullmatch(pattern, key)
            if match:
                groups = [int(g) if g.isdigit() else g for g in match.groups()]
                out["model.diffusion_model." + name(*groups)] = value
                break
        else:
            raise KeyError(f"no original-layout name for UNet key {key}")
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    levels = len(config["up_block_types"])
    inverse = DIFFUSERS_TO_LDM_MAPPING["vae"]
    out = {}
    for key, value in state.items():
        if key in inverse:
            name = inverse[key]
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            name = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            name = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            name = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            name = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            name = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
            name = f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
            if m[3] == "weight" and m[2] != "group_norm":
                value = value[:, :, None, None]  # the original keeps them as 1x1 convolutions
        else:
            raise KeyError(f"no original-layout name for VAE key {key}")
        out["first_stage_model." + name.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def write_ldm_checkpoint(folder: Path, target: Path) -> Path:
    """`folder` (a diffusers SD 1.x checkpoint, default variant) as one original-layout file at `target`."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    unet = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    vae = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    text = load_file(folder / "text_encoder" / "model.safetensors")
    ldm = {**unet_to_ldm(unet, unet_config), **vae_to_ldm(vae, vae_config)}
    # transformers 5 saves CLIPTextModel without its `text_model.` prefix; the original layout has it.
    ldm.update({f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v for k, v in text.items()})
    # Self-check against diffusers' own converters: the file must come back as exactly these weights.
    back = convert_ldm_unet_checkpoint(ldm, unet_config)
    assert back.keys() == unet.keys() and all(torch.equal(back[k], unet[k]) for k in unet)
    back = convert_ldm_vae_checkpoint(ldm, vae_config)
    assert back.keys() == vae.keys() and all(torch.equal(back[k], vae[k]) for k in vae)
    save_file({k: v.contiguous() for k, v in ldm.items()}, target)
    return target
