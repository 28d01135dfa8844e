"""Other tools' parameters read back from an image: ComfyUI, InvokeAI (3+, 2, 1), NovelAI, Fooocus, SwarmUI, and
AUTOMATIC1111's text in a JPEG's or WebP's EXIF.

Each fixture mirrors a real file's metadata: the sd-parsers project's test images
(github.com/d3x-at/sd-parsers, tests/resources/parsers/*), or, where it has none, what the tool's source writes
(cited at the test). The images themselves are 8x8 and written here with Pillow.
"""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image, ImageFile, PngImagePlugin, WebPImagePlugin

from core import metadata_formats, png_info
from core.errors import InvalidRequest
from core.metadata_formats import exif_user_comment, read_foreign
from core.png_info import parse_parameters, text_chunks


def _chunks(tmp_path, text: dict[str, str]) -> dict[str, str]:
    """The text chunks of a PNG written with `text`, as the PNG info tab reads them."""
    meta = PngImagePlugin.PngInfo()
    for key, value in text.items():
        meta.add_text(key, value)
    path = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "gray").save(path, pnginfo=meta)
    return text_chunks(path)


def _read(tmp_path, text: dict[str, str]) -> dict:
    found, problems = read_foreign(_chunks(tmp_path, text))
    assert problems == []
    assert found is not None
    return found


def test_the_cap_is_png_infos():
    assert metadata_formats.MAX_TEXT_BYTES == png_info.MAX_TEXT_BYTES


# -- ComfyUI ------------------------------------------------------------------------------------------------------

# sd-parsers' ComfyUI/img2img_cropped.png `prompt` (an early ComfyUI: `sample_` sampler names, CheckpointLoader).
COMFY_IMG2IMG = {
    "3": {
        "inputs": {
            "seed": 280823642470253,
            "Random seed after every gen": True,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "sample_dpmpp_2m",
            "scheduler": "normal",
            "denoise": 0.8700000000000001,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["12", 0],
        },
        "class_type": "KSampler",
    },
    "4": {
        "inputs": {"config_name": "v1-inference.yaml", "ckpt_name": "v1-5-pruned-emaonly.ckpt"},
        "class_type": "CheckpointLoader",
    },
    "6": {
        "inputs": {"text": "photograph of victorian woman with wings, sky clouds, meadow grass\n", "clip": ["4", 1]},
        "class_type": "CLIPTextEncode",
    },
    "7": {"inputs": {"text": "watermark, text\n", "clip": ["4", 1]}, "class_type": "CLIPTextEncode"},
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
    "10": {"inputs": {"image": "example.png"}, "class_type": "LoadImage", "is_changed": "a8e215ad32a0052f"},
    "12": {"inputs": {"pixels": ["10", 0], "vae": ["4", 2]}, "class_type": "VAEEncode"},
}


def _sdxl_graph(sampler: str = "dpmpp_2m", scheduler: str = "karras") -> dict:
    """ComfyUI's default SDXL workflow in API form (nodes.py classes), with two LoRAs, a seed from a PrimitiveInt
    node (comfy_extras/nodes_primitive.py) and a batch of two."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/sd_xl_base_1.0.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "styles\\film_grain.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1.0,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "11": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"lora_name": "detail-tweaker.safetensors", "strength_model": -0.5, "model": ["10", 0]},
        },
        "12": {"class_type": "PrimitiveInt", "inputs": {"value": 123456789012}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1152, "height": 896, "batch_size": 2}},
        "6": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {
                "width": 4096,
                "height": 4096,
                "crop_w": 0,
                "crop_h": 0,
                "target_width": 4096,
                "target_height": 4096,
                "text_g": "a lighthouse at dusk, oil painting",
                "text_l": "oil painting",
                "clip": ["10", 1],
            },
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["10", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": ["12", 0],
                "steps": 28,
                "cfg": 6.5,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["11", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def test_a_comfyui_img2img_graph(tmp_path):
    found = _read(tmp_path, {"prompt": json.dumps(COMFY_IMG2IMG), "workflow": json.dumps({"nodes": [], "links": []})})
    assert (found["found"], found["tool"], found["task"]) == ("comfyui", "ComfyUI", "img2img")
    assert found["fields"] == {
        "seed": 280823642470253,
        "steps": 20,
        "guidance_scale": 8.0,
        "scheduler": "DPM++ 2M",  # sample_dpmpp_2m on the "normal" schedule
        "prompt": "photograph of victorian woman with wings, sky clouds, meadow grass\n",
        "negative_prompt": "watermark, text\n",
        "strength": pytest.approx(0.87),  # denoise below 1 on a VAEEncoded LoadImage
    }
    assert found["other"] == {"Model": "v1-5-pruned-emaonly.ckpt"}
    assert found["loras"] == [] and found["unmapped"] == []
    assert '"sampler_name": "sample_dpmpp_2m"' in found["text"]


def test_an_sdxl_graph_with_loras_and_a_seed_node(tmp_path):
    found = _read(tmp_path, {"prompt": json.dumps(_sdxl_graph())})
    assert found["task"] == "text2img"
    assert found["fields"] == {
        "seed": 123456789012,  # followed from the PrimitiveInt node
        "steps": 28,
        "guidance_scale": 6.5,
        "scheduler": "DPM++ 2M Karras",
        "prompt": "a lighthouse at dusk, oil painting",  # CLIPTextEncodeSDXL's text_g
        "negative_prompt": "blurry, lowres",
        "width": 1152,
        "height": 896,
    }
    assert found["loras"] == [{"name": "film_grain", "weight": 0.8}, {"name": "detail-tweaker", "weight": -0.5}]
    assert found["other"] == {"Batch size": "2", "Model": "sdxl/sd_xl_base_1.0.safetensors"}


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("euler", "normal", "Euler"),
        ("euler_ancestral", "normal", "Euler a"),
        ("lms", "karras", "LMS Karras"),
        ("dpmpp_2m_sde_gpu", "karras", "DPM++ 2M SDE Karras"),
        ("dpmpp_3m_sde", "exponential", "DPM++ 3M SDE Exponential"),
        ("dpmpp_sde", "karras", "DPM++ SDE Karras"),
        ("dpm_2_ancestral", "karras", "DPM2 a Karras"),
        ("ddim", "ddim_uniform", "DDIM"),
        ("uni_pc_bh2", "normal", "UniPC"),
        ("ddpm", "normal", "DDPM"),
        ("lcm", "normal", "LCM"),
    ],
)
def test_comfyui_samplers_with_a_catalog_match(tmp_path, sampler, scheduler, expected):
    found = _read(tmp_path, {"prompt": json.dumps(_sdxl_graph(sampler, scheduler))})
    assert found["fields"]["scheduler"] == expected and found["unmapped"] == []


@pytest.mark.parametrize(
    ("sampler", "scheduler"),
    [("euler_ancestral", "karras"), ("dpmpp_2s_ancestral", "normal"), ("euler", "simple"), ("deis", "normal")],
)
def test_comfyui_samplers_without_one_are_named(tmp_path, sampler, scheduler):
    found = _read(tmp_path, {"prompt": json.dumps(_sdxl_graph(sampler, scheduler))})
    assert "scheduler" not in found["fields"]
    assert found["unmapped"] == [
        f"Sampler '{sampler}' with scheduler '{scheduler}' (ComfyUI) has no match among this studio's schedulers; "
        "the scheduler was left as it is."
    ]
    assert found["other"]["Sampler"] == sampler and found["other"]["Scheduler"] == scheduler
    assert found["fields"]["steps"] == 28  # the rest is still read


def test_a_two_pass_graph_reads_the_first_sampler_and_says_so(tmp_path):
    # sd-parsers' ComfyUI/unclip_2pass_cropped.png: an unCLIP pass, then a hires pass on another checkpoint.
    graph = {
        "3": {
            "inputs": {
                "seed": 1106257833005336,
                "steps": 26,
                "cfg": 8.0,
                "sampler_name": "uni_pc_bh2",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["32", 0],
                "positive": ["37", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "class_type": "KSampler",
        },
        "5": {"inputs": {"width": 1280, "height": 704, "batch_size": 1}, "class_type": "EmptyLatentImage"},
        "6": {
            "inputs": {
                "text": "\n(waifu, anime, exceptional, best aesthetic, best quality, masterpiece:1.2)\n",
                "clip": ["32", 1],
            },
            "class_type": "CLIPTextEncode",
        },
        "7": {
            "inputs": {"text": "lowres, (bad anatomy), (bad hands), text", "clip": ["32", 1]},
            "class_type": "CLIPTextEncode",
        },
        "8": {"inputs": {"samples": ["3", 0], "vae": ["46", 0]}, "class_type": "VAEDecode"},
        "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
        "13": {"inputs": {"clip_vision": ["32", 3], "image": ["34", 0]}, "class_type": "CLIPVisionEncode"},
        "19": {
            "inputs": {
                "strength": 0.5,
                "noise_augmentation": 0.4,
                "conditioning": ["6", 0],
                "clip_vision_output": ["13", 0],
            },
            "class_type": "unCLIPConditioning",
        },
        "32": {
            "inputs": {"ckpt_name": "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors"},
            "class_type": "unCLIPCheckpointLoader",
        },
        "34": {"inputs": {"image": "mountains.png", "choose file to upload": "image"}, "class_type": "LoadImage"},
        "36": {"inputs": {"clip_vision": ["32", 3], "image": ["38", 0]}, "class_type": "CLIPVisionEncode"},
        "37": {
            "inputs": {
                "strength": 0.5,
                "noise_augmentation": 0.4,
                "conditioning": ["19", 0],
                "clip_vision_output": ["36", 0],
            },
            "class_type": "unCLIPConditioning",
        },
        "38": {"inputs": {"image": "sunset.png", "choose file to upload": "image"}, "class_type": "LoadImage"},
        "40": {
            "inputs": {
                "upscale_method": "nearest-exact",
                "width": 1920,
                "height": 1088,
                "crop": "disabled",
                "samples": ["3", 0],
            },
            "class_type": "LatentUpscale",
        },
        "41": {
            "inputs": {
                "seed": 119080905858220,
                "steps": 8,
                "cfg": 9.0,
                "sampler_name": "dpmpp_sde",
                "scheduler": "normal",
                "denoise": 0.52,
                "model": ["45", 0],
                "positive": ["49", 0],
                "negative": ["47", 0],
                "latent_image": ["40", 0],
            },
            "class_type": "KSampler",
        },
        "42": {"inputs": {"samples": ["41", 0], "vae": ["46", 0]}, "class_type": "VAEDecode"},
        "43": {"inputs": {"filename_prefix": "ComfyUI", "images": ["42", 0]}, "class_type": "SaveImage"},
        "45": {"inputs": {"ckpt_name": "cardosAnimated_v20.safetensors"}, "class_type": "CheckpointLoaderSimple"},
        "46": {"inputs": {"vae_name": "kl-f8-anime2.ckpt"}, "class_type": "VAELoader"},
        "47": {"inputs": {"text": "(hands), text, error, cropped", "clip": ["45", 1]}, "class_type": "CLIPTextEncode"},
        "49": {
            "inputs": {"text": "beautiful scenery landscape outdoors mountains", "clip": ["45", 1]},
            "class_type": "CLIPTextEncode",
        },
    }
    found = _read(tmp_path, {"prompt": json.dumps(graph)})
    assert found["task"] == "text2img"  # the LoadImage feeds unCLIP's conditioning, not the latent
    assert found["fields"] == {
        "seed": 1106257833005336,
        "steps": 26,
        "guidance_scale": 8.0,
        "scheduler": "UniPC",
        # through both unCLIPConditionings
        "prompt": "\n(waifu, anime, exceptional, best aesthetic, best quality, masterpiece:1.2)\n",
        "negative_prompt": "lowres, (bad anatomy), (bad hands), text",
        "width": 1280,
        "height": 704,
    }
    assert found["other"]["Model"] == "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors"
    assert found["unmapped"] == [
        "The graph has 2 samplers; node 3 (KSampler), the first that feeds a SaveImage, was read and the others "
        "were ignored."
    ]


def test_comfyui_inpainting_and_an_advanced_sampler(tmp_path):
    inpaint = {  # ComfyUI's inpainting example: VAEEncodeForInpaint takes LoadImage's image and mask outputs
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "512-inpainting-ema.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "yosemite.png"}},
        "3": {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["2", 0], "mask": ["2", 1], "vae": ["1", 2], "grow_mask_by": 6},
        },
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a river", "clip": ["1", 1]}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 7,
                "steps": 20,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["1", 0],
                "positive": ["4", 0],
                "negative": ["4", 0],
                "latent_image": ["3", 0],
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "ComfyUI"}},
    }
    found = _read(tmp_path, {"prompt": json.dumps(inpaint)})
    assert found["task"] == "inpaint" and found["fields"]["strength"] == 1.0 and found["fields"]["scheduler"] == "Euler"

    advanced = {k: v for k, v in inpaint.items() if k != "5"}
    advanced["3"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}}
    advanced["5"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable",
            "noise_seed": 99,
            "steps": 25,
            "cfg": 7.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "start_at_step": 10,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
            "model": ["1", 0],
            "positive": ["4", 0],
            "negative": ["4", 0],
            "latent_image": ["3", 0],
        },
    }
    found = _read(tmp_path, {"prompt": json.dumps(advanced)})
    assert found["task"] == "img2img"
    assert found["fields"]["seed"] == 99 and found["fields"]["strength"] == pytest.approx(0.6)  # steps 10..25 of 25
    assert found["other"]["Start at step"] == "10"


def test_a_workflow_alone_says_it_holds_the_ui_graph(tmp_path):
    found = _read(
        tmp_path, {"workflow": json.dumps({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []})}
    )
    assert (found["found"], found["fields"], found["task"]) == ("comfyui", {}, "text2img")
    assert found["unmapped"] == [
        "The image holds ComfyUI's UI graph (`workflow`) only, not the API graph (`prompt`) its parameters are "
        "read from; nothing was mapped."
    ]


def test_the_web_ui_text_beside_a_graph_is_read_instead(tmp_path):
    text = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"
    assert read_foreign(_chunks(tmp_path, {"parameters": text, "prompt": json.dumps(COMFY_IMG2IMG)})) == (None, [])
    # A plain-text `prompt` chunk (Easy Diffusion writes one) is not ComfyUI's graph.
    assert read_foreign(_chunks(tmp_path, {"prompt": "a cat", "negative_prompt": "dog"})) == (None, [])


# -- InvokeAI -----------------------------------------------------------------------------------------------------

# sd-parsers' InvokeAI/invokeai_imeta1.png (InvokeAI 3).
INVOKEAI_3 = (
    '{"generation_mode":"sdxl_txt2img",'
    '"positive_prompt":"digital artwork, oil painting. painterly brushstrokes, holidays,",'
    '"negative_prompt":"grainy+, photo, oversaturated, overexposed, blurry",'
    '"width":1024,"height":1024,"seed":3293022630,'
    '"rand_device":"cpu","cfg_scale":8.0,"cfg_rescale_multiplier":0.0,"steps":35,"scheduler":"euler",'
    '"model":{"model_name":"juggernautXL","base_model":"sdxl","model_type":"main"},"ipAdapters":[{"image":{"image_name":'
    '"21b3ddb9.png"},"ip_adapter_model":{"model_name":"ip-adapter-plus_sdxl_vit-h","base_model":"sdxl"},"weight":0.45}],'
    '"vae":{"model_name":"VAEFix","base_model":"sdxl"},"positive_style_prompt":"","negative_style_prompt":""}'
)


def test_invokeai_3(tmp_path):
    found = _read(tmp_path, {"invokeai_metadata": INVOKEAI_3})
    assert (found["found"], found["tool"], found["task"]) == ("invokeai", "InvokeAI 3+", "text2img")
    assert found["fields"] == {
        "prompt": "digital artwork, oil painting. painterly brushstrokes, holidays,",
        "negative_prompt": "grainy+, photo, oversaturated, overexposed, blurry",
        "seed": 3293022630,
        "steps": 35,
        "guidance_scale": 8.0,
        "width": 1024,
        "height": 1024,
        "scheduler": "Euler",
    }
    assert found["other"]["Model"] == "juggernautXL" and found["other"]["Base model"] == "sdxl"
    assert found["other"]["VAE"] == "VAEFix" and found["other"]["Noise device"] == "cpu"
    assert "ip-adapter-plus_sdxl_vit-h" in found["other"]["IP Adapters"]
    assert found["unmapped"] == []


def test_invokeai_5_img2img_with_loras(tmp_path):
    # invokeai/app/invocations/metadata.py CoreMetadataInvocation; models are ModelIdentifierField (key, hash, name...).
    meta = {
        "app_version": "5.6.0",
        "generation_mode": "sdxl_img2img",
        "positive_prompt": "a red fox in snow",
        "negative_prompt": "",
        "width": 1024,
        "height": 768,
        "seed": 42,
        "cfg_scale": 5.5,
        "steps": 30,
        "scheduler": "dpmpp_2m_sde_k",
        "strength": 0.55,
        "clip_skip": 1,
        "model": {"key": "7a5e", "hash": "blake3:ab12", "name": "Juggernaut XL v9", "base": "sdxl", "type": "main"},
        "loras": [
            {
                "model": {"key": "c3d4", "hash": "blake3:cd34", "name": "film-grain", "base": "sdxl", "type": "lora"},
                "weight": 0.75,
            }
        ],
    }
    found = _read(tmp_path, {"invokeai_metadata": json.dumps(meta)})
    assert found["task"] == "img2img"
    assert found["fields"]["scheduler"] == "DPM++ 2M SDE Karras" and found["fields"]["strength"] == 0.55
    assert found["fields"]["negative_prompt"] == "" and found["fields"]["seed"] == 42
    assert found["loras"] == [{"name": "film-grain", "weight": 0.75, "hash": "blake3:cd34"}]
    assert found["other"] == {
        "Model": "Juggernaut XL v9",
        "Model hash": "blake3:ab12",
        "Base model": "sdxl",
        "Version": "5.6.0",
        "Clip skip": "1",
    }
    meta["scheduler"], meta["generation_mode"] = "dpmpp_3m_k", "inpaint"
    found = _read(tmp_path, {"invokeai_metadata": json.dumps(meta)})
    assert found["task"] == "inpaint" and "scheduler" not in found["fields"]
    assert found["unmapped"] == [
        "Sampler 'dpmpp_3m_k' (InvokeAI 3+) has no match among this studio's schedulers; the scheduler was left as "
        "it is."
    ]


# sd-parsers' InvokeAI/invokeai_sdmeta1.png (InvokeAI 2.3): both chunks.
DREAM = (
    '"professional photo of young woman, long brunette hair, at night, city background, film grain, low contrast '
    '[rendering, glowing eyes, skinny]" -s 50 -S 2980747362 -W 512 -H 768 -C 5 -A k_lms -G 0.9 -cf 0.75 -U 4 0.95'
)
SD_METADATA = {
    "model": "stable diffusion",
    "model_weights": "deliberateForInvoke_v08",
    "model_hash": "56d1442a0feefd64836a19ac8e3527ec71c884fc962e246ddf67b03e42921272",
    "app_id": "invoke-ai/InvokeAI",
    "app_version": "2.3.0",
    "image": {
        "prompt": [{"prompt": DREAM[1 : DREAM.rindex('"')], "weight": 1.0}],
        "steps": 50,
        "cfg_scale": 5,
        "threshold": 0,
        "perlin": 0,
        "height": 768,
        "width": 512,
        "seed": 2980747362,
        "seamless": False,
        "hires_fix": False,
        "type": "txt2img",
        "postprocessing": [{"type": "codeformer", "strength": 0.9, "fidelity": 0.75}],
        "sampler": "k_lms",
        "variations": [],
    },
}
DREAM_FIELDS = {
    "prompt": "professional photo of young woman, long brunette hair, at night, city background, film grain, "
    "low contrast",
    "negative_prompt": "rendering, glowing eyes, skinny",  # InvokeAI's [negative] words
    "steps": 50,
    "guidance_scale": 5.0,
    "seed": 2980747362,
    "width": 512,
    "height": 768,
    "scheduler": "LMS",
}


def test_invokeai_2(tmp_path):
    found = _read(tmp_path, {"Dream": DREAM, "sd-metadata": json.dumps(SD_METADATA)})
    assert (found["tool"], found["task"], found["fields"]) == ("InvokeAI 2", "text2img", DREAM_FIELDS)
    assert found["other"]["Model"] == "deliberateForInvoke_v08" and found["other"]["Version"] == "2.3.0"
    assert found["other"]["Model hash"].startswith("56d1442a") and "codeformer" in found["other"]["Postprocessing"]
    # 2.3's metadata_dumps moves an img2img's strength to `strength_steps`.
    image = {**SD_METADATA["image"], "type": "img2img", "strength_steps": 0.6, "init_img": "in.png"}
    found = _read(tmp_path, {"sd-metadata": json.dumps({**SD_METADATA, "image": image})})
    assert (
        found["task"] == "img2img" and found["fields"]["strength"] == 0.6 and found["other"]["Init image"] == "in.png"
    )


def test_invokeai_1_dream(tmp_path):
    found = _read(tmp_path, {"Dream": DREAM})  # sd-parsers' InvokeAI/invokeai_dream1.png
    assert (found["tool"], found["task"], found["fields"]) == ("InvokeAI 1 (Dream)", "text2img", DREAM_FIELDS)
    assert found["other"] == {"Face restoration strength": "0.9", "CodeFormer fidelity": "0.75", "Upscale": "4 0.95"}
    found = _read(tmp_path, {"Dream": '"a barn" -s 20 -S 7 -W 512 -H 512 -C 7.5 -I barn.png -A k_euler_a -f 0.6'})
    assert found["task"] == "img2img" and found["fields"]["strength"] == 0.6
    assert "scheduler" not in found["fields"] and found["other"]["Sampler"] == "k_euler_a"
    assert found["unmapped"][0].startswith(
        "Sampler 'k_euler_a' (InvokeAI 1 (Dream)) ran on Karras sigmas below 30 steps"
    )


# -- NovelAI ------------------------------------------------------------------------------------------------------


def test_novelai_v1(tmp_path):
    comment = {  # sd-parsers' NovelAI/novelai1_cropped.png
        "steps": 50,
        "sampler": "k_euler_ancestral",
        "seed": 2253955223,
        "strength": 0.4,
        "noise": 0.0,
        "scale": 10.0,
        "uc": "lowres, bad anatomy, bad hands, text, error",
    }
    found = _read(
        tmp_path,
        {
            "Title": "AI generated image",
            "Description": "masterpiece, best quality,  cat, space, icon",
            "Software": "NovelAI",
            "Source": "Stable Diffusion 1D44365E",
            "Comment": json.dumps(comment),
        },
    )
    assert (found["found"], found["tool"], found["task"]) == ("novelai", "NovelAI", "text2img")
    assert found["fields"] == {
        "prompt": "masterpiece, best quality,  cat, space, icon",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error",
        "seed": 2253955223,
        "steps": 50,
        "guidance_scale": 10.0,
        "scheduler": "Euler a",
    }
    assert found["other"] == {"Model": "Stable Diffusion 1D44365E", "strength": "0.4", "noise": "0.0"}
    assert found["unmapped"] == [
        "NovelAI's older metadata records a strength for every image, not whether an image was given; it was read as "
        "text to image."
    ]


def test_novelai_v3_and_its_img2img(tmp_path):
    # A NAI v3 Comment quoted in github.com/6DammK9/nai-anime-pure-negative-prompt, ch02/nai_v3_sdxl.md.
    comment = {
        "prompt": "{granblue fantasy, official art}, year 2022, 1girl, best quality, amazing quality",
        "steps": 28,
        "height": 1216,
        "width": 832,
        "scale": 5.0,
        "uncond_scale": 1.0,
        "cfg_rescale": 0.0,
        "seed": 3816166865,
        "n_samples": 1,
        "noise_schedule": "native",
        "sampler": "k_euler",
        "sm": False,
        "sm_dyn": False,
        "uc": "nsfw, lowres, {bad}, error",
        "request_type": "PromptGenerateRequest",
    }
    chunks = {"Software": "NovelAI", "Source": "Stable Diffusion XL C1E1DE52", "Description": comment["prompt"]}
    found = _read(tmp_path, {**chunks, "Comment": json.dumps(comment)})
    assert found["task"] == "text2img" and found["unmapped"] == []
    assert found["fields"] == {
        "prompt": comment["prompt"],
        "negative_prompt": "nsfw, lowres, {bad}, error",
        "seed": 3816166865,
        "steps": 28,
        "guidance_scale": 5.0,
        "width": 832,
        "height": 1216,
        "scheduler": "Euler",
    }
    assert found["other"]["Model"] == "Stable Diffusion XL C1E1DE52" and found["other"]["cfg_rescale"] == "0.0"
    img2img = {
        **comment,
        "request_type": "Img2ImgRequest",
        "strength": 0.7,
        "noise": 0.1,
        "sampler": "k_dpmpp_2s_ancestral",
    }
    found = _read(tmp_path, {**chunks, "Comment": json.dumps(img2img)})
    assert found["task"] == "img2img" and found["fields"]["strength"] == 0.7
    assert found["unmapped"] == [
        "Sampler 'k_dpmpp_2s_ancestral' with scheduler 'native' (NovelAI) has no match among this studio's schedulers; "
        "the scheduler was left as it is."
    ]
    karras = {**comment, "sampler": "k_dpmpp_2m", "noise_schedule": "karras"}
    assert _read(tmp_path, {**chunks, "Comment": json.dumps(karras)})["fields"]["scheduler"] == "DPM++ 2M Karras"


# -- Fooocus ------------------------------------------------------------------------------------------------------

# sd-parsers' Fooocus/fooocus1_cropped.png `parameters` (Fooocus v2.4.3, its "fooocus" metadata scheme), shortened.
FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689",
    "clip_skip": 2,
    "full_negative_prompt": ["(worst quality, low quality:1.4), (watermark:1.2)", "anime, cartoon, graphic"],
    "full_prompt": [
        "cinematic still a smiling goldfish . emotional, harmonious",
        "a smiling goldfish, deep focus, intricate",
    ],
    "guidance_scale": 4,
    "loras": [],
    "metadata_scheme": "fooocus",
    "negative_prompt": "",
    "performance": "Speed",
    "prompt": "a smiling goldfish",
    "prompt_expansion": "a smiling goldfish, deep focus, intricate",
    "refiner_model": "None",
    "refiner_switch": 0.5,
    "resolution": "(768, 1280)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "6952411511246973023",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']",
    "vae": "Default (model)",
    "version": "Fooocus v2.4.3",
}


def test_fooocus(tmp_path):
    found = _read(tmp_path, {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"})
    assert (found["found"], found["tool"], found["task"]) == ("fooocus", "Fooocus v2.4.3", "text2img")
    assert found["fields"] == {
        # what Fooocus encoded: its styles and expansion applied, as its own A1111 scheme writes the prompt
        "prompt": "cinematic still a smiling goldfish . emotional, harmonious, "
        "a smiling goldfish, deep focus, intricate",
        "negative_prompt": "(worst quality, low quality:1.4), (watermark:1.2), anime, cartoon, graphic",
        "seed": 6952411511246973023,  # a string in the JSON
        "steps": 30,
        "guidance_scale": 4.0,
        "width": 768,
        "height": 1280,
        "scheduler": "DPM++ 2M SDE Karras",
    }
    assert (
        found["other"]["Raw prompt"] == "a smiling goldfish"
        and found["other"]["Model"] == "juggernautXL_v8Rundiffusion"
    )
    assert found["other"]["Model hash"] == "aeb7e9e689" and found["other"]["Sharpness"] == "2"
    assert found["other"]["Styles"] == "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']"
    assert "Refiner Model" not in found["other"] and "refiner_model" not in found["other"]  # "None"
    assert found["loras"] == [] and found["unmapped"] == []


def test_fooocus_2_5_loras_and_the_older_labelled_keys(tmp_path):
    # FooocusMetadataParser.to_string writes loras as [stem, weight, hash] (modules/meta_parser.py, v2.5).
    newer = {
        **FOOOCUS,
        "version": "Fooocus v2.5.0",
        "sampler": "dpmpp_2s_ancestral",
        "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"], ["sdxl_lcm_lora", 1.0, "3d18b05e4f"]],
    }
    found = _read(tmp_path, {"parameters": json.dumps(newer), "fooocus_scheme": "fooocus"})
    assert found["tool"] == "Fooocus v2.5.0"
    assert found["loras"] == [
        {"name": "sd_xl_offset_example-lora_1.0", "weight": 0.1, "hash": "4852686128"},
        {"name": "sdxl_lcm_lora", "weight": 1.0, "hash": "3d18b05e4f"},
    ]
    assert found["unmapped"] == [
        "Sampler 'dpmpp_2s_ancestral' with scheduler 'karras' (Fooocus v2.5.0) has no match among this studio's "
        "schedulers; the scheduler was left as it is."
    ]
    # The labels Fooocus' own reader falls back to (meta_parser.load_parameter_button_click), with its log's LoRAs.
    older = {
        "Prompt": "a cat",
        "Negative Prompt": "dog",
        "Styles": "['Fooocus V2']",
        "Performance": "Speed",
        "Resolution": "(1152, 896)",
        "Sharpness": 2.0,
        "Guidance Scale": 7.0,
        "Base Model": "sd_xl_base_1.0_0.9vae.safetensors",
        "Sampler": "dpmpp_2m_sde_gpu",
        "Scheduler": "karras",
        "Seed": 1234,
        "LoRA 1": "sd_xl_offset_example-lora_1.0.safetensors : 0.5",
    }
    found = _read(tmp_path, {"parameters": json.dumps(older)})
    assert found["tool"] == "Fooocus"
    assert found["fields"] == {
        "prompt": "a cat",
        "negative_prompt": "dog",
        "seed": 1234,
        "guidance_scale": 7.0,
        "width": 1152,
        "height": 896,
        "scheduler": "DPM++ 2M SDE Karras",
    }
    assert found["loras"] == [{"name": "sd_xl_offset_example-lora_1.0", "weight": 0.5}]
    assert found["other"]["Model"] == "sd_xl_base_1.0_0.9vae.safetensors"


# -- SwarmUI ------------------------------------------------------------------------------------------------------


def test_swarmui(tmp_path):
    # SwarmUI's docs/Image Metadata Format.md example, with a LoRA, an init image and ComfyUI sampler names.
    metadata = {
        "sui_image_params": {
            "prompt": "a photo of a cat",
            "negativeprompt": "blurry",
            "model": "OfficialStableDiffusion/sd_xl_base_1.0",
            "seed": 1,
            "steps": 20,
            "cfgscale": 7.0,
            "aspectratio": "1:1",
            "width": 1024,
            "height": 1024,
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "initimagecreativity": 0.6,
            "loras": ["Style/pixel-art-xl"],
            "loraweights": ["0.8"],
            "automaticvae": True,
            "swarm_version": "0.9.3.1",
        },
        "sui_extra_data": {"date": "2025-01-25", "prep_time": "6.11 sec", "generation_time": "4.84 sec"},
        "sui_models": [
            {"name": "OfficialStableDiffusion/sd_xl_base_1.0.safetensors", "param": "model", "hash": "0xd7a9105a"},
            {"name": "Style/pixel-art-xl.safetensors", "param": "loras", "hash": "0x1234abcd"},
        ],
    }
    found = _read(tmp_path, {"parameters": json.dumps(metadata, indent=2)})
    assert (found["found"], found["tool"], found["task"]) == ("swarmui", "SwarmUI", "img2img")
    assert found["fields"] == {
        "prompt": "a photo of a cat",
        "negative_prompt": "blurry",
        "seed": 1,
        "steps": 20,
        "guidance_scale": 7.0,
        "width": 1024,
        "height": 1024,
        "scheduler": "DPM++ 2M Karras",
        "strength": 0.6,  # Init Image Creativity
    }
    assert found["loras"] == [{"name": "pixel-art-xl", "weight": 0.8, "hash": "0x1234abcd"}]
    assert (
        found["other"]["Model"] == "OfficialStableDiffusion/sd_xl_base_1.0"
        and found["other"]["Model hash"] == "0xd7a9105a"
    )
    assert found["other"]["Version"] == "0.9.3.1" and found["other"]["generation_time"] == "4.84 sec"
    params = {k: v for k, v in metadata["sui_image_params"].items() if k not in ("initimagecreativity", "scheduler")}
    found = _read(tmp_path, {"parameters": json.dumps({"sui_image_params": {**params, "seed": -1}})})
    assert found["task"] == "text2img" and "seed" not in found["fields"] and "scheduler" not in found["fields"]
    assert found["unmapped"] == [
        "The seed was random (-1) and SwarmUI did not record the one it drew; it was left as it is.",
        "Sampler 'dpmpp_2m' (SwarmUI) was recorded without its scheduler, whose default depends on the model; "
        "the scheduler was left as it is.",
    ]


# -- damaged, wrong and hostile metadata --------------------------------------------------------------------------

A1111 = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"


def test_a_damaged_chunk_never_blocks_a_valid_one(tmp_path):
    found, problems = read_foreign(_chunks(tmp_path, {"invokeai_metadata": '{"seed": 1,', "parameters": A1111}))
    assert found is None  # the web UI text is read instead
    assert problems == [
        "The image's `invokeai_metadata` chunk (InvokeAI 3+) is not valid JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 12 (char 11)); it was skipped."
    ]
    found, problems = read_foreign(
        _chunks(tmp_path, {"parameters": '{"prompt": "a cat", "seed"', "fooocus_scheme": "fooocus"})
    )
    assert found is None and problems[0].startswith("The image's `parameters` chunk (Fooocus) is not valid JSON (")
    found, problems = read_foreign(_chunks(tmp_path, {"sd-metadata": "[1, 2]", "Dream": DREAM}))
    assert found["tool"] == "InvokeAI 1 (Dream)" and found["fields"] == DREAM_FIELDS
    assert problems == [
        "The image's `sd-metadata` chunk (InvokeAI 2) is JSON but not the object InvokeAI 2 writes; it was skipped."
    ]
    found, problems = read_foreign(_chunks(tmp_path, {"prompt": "{not json", "workflow": '{"nodes": []}'}))
    assert found["tool"] == "ComfyUI" and found["fields"] == {} and "could not be read" in found["unmapped"][0]
    assert problems[0].startswith("The image's `prompt` chunk (ComfyUI) is not valid JSON")
    found, problems = read_foreign(_chunks(tmp_path, {"parameters": '{"hello": "world"}'}))
    assert found is None
    assert problems == [
        "The image's `parameters` chunk holds JSON that is neither Fooocus' nor SwarmUI's (keys: hello); "
        "it was skipped."
    ]


def test_values_of_the_wrong_kind_are_named_not_raised(tmp_path):
    meta = {
        "positive_prompt": {"nested": True},
        "seed": "abc",
        "steps": 1e9,
        "cfg_scale": {"a": 1},
        "width": -8,
        "height": True,
        "scheduler": 7,
        "generation_mode": "img2img",
        "strength": 3,
        "loras": [{"weight": "x"}, 5, {"model": {"name": "grain"}, "weight": "heavy"}],
    }
    found = _read(tmp_path, {"invokeai_metadata": json.dumps(meta)})
    assert found["fields"] == {} and found["task"] == "img2img"
    assert found["unmapped"] == [
        "The positive prompt (InvokeAI 3+) is not text; it was left as it is.",
        "Seed 'abc' (InvokeAI 3+) is not a whole number from 0 to 18446744073709551615; it was left as it is.",
        "Steps 1000000000.0 (InvokeAI 3+) is not a whole number from 1 to 10000; it was left as it is.",
        'Guidance scale {"a": 1} (InvokeAI 3+) is not a number from 0 to 100; it was left as it is.',
        "Width -8 (InvokeAI 3+) is not a whole number from 1 to 16384; it was left as it is.",
        "Height True (InvokeAI 3+) is not a whole number from 1 to 16384; it was left as it is.",
        "Sampler 7 (InvokeAI 3+) has no match among this studio's schedulers; the scheduler was left as it is.",
        "Strength 3 (InvokeAI 3+) is not a number from 0 to 1; it was left as it is.",
        "A LoRA without a name (InvokeAI 3+) was left out.",
        "A LoRA without a name (InvokeAI 3+) was left out.",
        "LoRA 'grain' has weight 'heavy' (InvokeAI 3+), not a number from -100 to 100; it was left out.",
    ]
    seed = _read(tmp_path, {"parameters": json.dumps({**FOOOCUS, "seed": str(2**64)})})
    assert "seed" not in seed["fields"] and seed["unmapped"][0].startswith(
        "Seed '18446744073709551616' (Fooocus v2.4.3)"
    )


def test_a_too_long_chunk_is_skipped(tmp_path):
    huge = json.dumps({"positive_prompt": "x" * (png_info.MAX_TEXT_BYTES + 10)})
    started = time.perf_counter()
    found, problems = read_foreign(_chunks(tmp_path, {"invokeai_metadata": huge, "parameters": A1111}))
    assert found is None and time.perf_counter() - started < 1
    assert problems == [
        "The image's `invokeai_metadata` chunk (InvokeAI 3+) is over 64 KB, far longer than any generation's "
        "parameters; it was skipped."
    ]


def test_a_hostile_comfyui_graph_finishes_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(metadata_formats, "MAX_TEXT_BYTES", 4 * 1024 * 1024)  # room for 10,000 nodes
    graph = {
        # every input of every node wired back into a ring, with the sampler inside it
        str(i): {
            "class_type": "ConditioningCombine",
            "inputs": {
                "conditioning_1": [str((i + 1) % 10_000), 0],
                "model": [str((i + 7) % 10_000), 0],
                "samples": [str((i + 3) % 10_000), 0],
            },
        }
        for i in range(10_000)
    }
    graph["0"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": ["1", 0],
            "steps": 20,
            "cfg": 7,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["0", 0],
            "positive": ["0", 0],
            "negative": ["2", 0],
            "latent_image": ["0", 0],
        },
    }
    graph["5"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0]}}
    started = time.perf_counter()
    found, problems = read_foreign({"prompt": json.dumps(graph)})
    assert time.perf_counter() - started < 2
    assert problems == [] and found["fields"]["steps"] == 20 and found["fields"]["scheduler"] == "Euler"
    assert "prompt" not in found["fields"] and any("positive prompt comes from nodes" in s for s in found["unmapped"])
    # JSON nested past the parser's depth, and nodes of every wrong shape
    deep = "[" * 50_000 + "]" * 50_000
    found, problems = read_foreign({"prompt": '{"1": ' + deep + "}"})
    assert found is None and problems[0].startswith("The image's `prompt` chunk (ComfyUI) is not valid JSON")
    odd = {
        "1": {"class_type": "KSampler", "inputs": [1, 2]},
        "2": None,
        "3": {"class_type": 5},
        "4": {
            "class_type": "KSampler",
            "inputs": {"seed": [True, 0], "model": ["4", "x"], "latent_image": [["4"], 0], "positive": ["9" * 5000, 0]},
        },
    }
    found, problems = read_foreign({"prompt": json.dumps(odd)})
    assert problems == [] and found["fields"] == {} and found["unmapped"][0].startswith("The graph has 2 samplers")


# -- AUTOMATIC1111's text in EXIF ---------------------------------------------------------------------------------

# sd-parsers' AUTOMATIC1111/automatic1111_cropped.jpg UserComment (piexif's "UNICODE" header, UTF-16 big-endian).
A1111_JPEG = (
    "photo of a duck\nNegative prompt: monochrome\nSteps: 15, Sampler: UniPC, CFG scale: 5, Seed: 235284042, "
    "Size: 512x400, Model hash: c0d1994c73, Model: realistic_realisticVisionV20_v20"
)


def _with_comment(tmp_path, kind: str, comment: bytes | str, *, ifd0: bool = False) -> str:
    exif = Image.Exif()
    if ifd0:
        exif[0x9286] = comment  # where Fooocus' meta_parser.get_exif puts it
    else:
        exif.get_ifd(0x8769)[0x9286] = comment
    path = tmp_path / f"in.{kind}"
    Image.new("RGB", (8, 8), "gray").save(path, exif=exif)
    return str(path)


@pytest.fixture
def no_pixels(monkeypatch):
    """Fail any pixel decoding: the comment is read from the metadata alone."""

    def refuse(self):
        raise AssertionError("pixels decoded")

    for cls in (ImageFile.ImageFile, WebPImagePlugin.WebPImageFile):
        monkeypatch.setattr(cls, "load", refuse)


@pytest.mark.parametrize(
    ("kind", "comment"),
    [
        ("jpg", b"UNICODE\0" + A1111_JPEG.encode("utf-16-be")),  # piexif.helper.UserComment.dump, as A1111 writes
        ("webp", b"UNICODE\0" + A1111_JPEG.encode("utf-16-le")),
        ("jpg", b"UNICODE\0\xff\xfe" + A1111_JPEG.encode("utf-16-le")),
        ("jpg", b"ASCII\0\0\0" + A1111_JPEG.encode("ascii")),
        ("webp", A1111_JPEG.encode("utf-8")),  # no charset header
    ],
)
def test_the_exif_user_comment_reads_back_the_web_ui_text(tmp_path, no_pixels, kind, comment):
    text = exif_user_comment(_with_comment(tmp_path, kind, comment))
    assert text == A1111_JPEG
    fields = parse_parameters(text)["fields"]
    assert (fields["prompt"], fields["negative_prompt"], fields["seed"], fields["width"]) == (
        "photo of a duck",
        "monochrome",
        235284042,
        512,
    )
    assert fields["scheduler"] == "UniPC"


def test_the_exif_user_comment_edge_cases(tmp_path, no_pixels):
    fooocus = json.dumps({"prompt": "a cat", "version": "Fooocus v2.5.0"})
    assert exif_user_comment(_with_comment(tmp_path, "jpg", fooocus, ifd0=True)) == fooocus
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    assert exif_user_comment(plain) is None
    assert exif_user_comment(Image.open(plain)) is None
    png = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(png)
    assert exif_user_comment(png) is None
    long = b"UNICODE\0" + ("x" * (png_info.MAX_TEXT_BYTES + 1)).encode("utf-16-be")
    with pytest.raises(InvalidRequest, match="EXIF UserComment is over 64 KB"):
        exif_user_comment(_with_comment(tmp_path, "webp", long))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InvalidRequest, match="not an image this studio can read"):
        exif_user_comment(junk)
