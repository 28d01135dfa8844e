"""Components keyed by content: a second checkpoint with byte-identical weights reuses what is in memory."""

from __future__ import annotations

import gc
import weakref

import torch

from core.studio import Studio, StudioOptions


def fresh() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_a_companion_with_identical_files_shares_their_modules():
    studio = fresh()
    main = studio.pool.components
    before = studio.memory_report()["pool_bytes"]
    studio.load_companion("inpaint", "demo-inpaint")
    companion = studio._companions["inpaint"].components
    assert companion["text_encoder"] is main["text_encoder"] and companion["vae"] is main["vae"]
    assert companion["unet"] is not main["unet"], "the 9-channel UNet differs, so it is its own"
    report = studio.memory_report()
    unet_bytes = next(r["bytes"] for r in report["components"] if r["name"] == "inpaint/unet")
    assert report["pool_bytes"] - before == unet_bytes, "only what differs (the UNet) was added"
    assert companion["safety_checker"] is main["safety_checker"]
    te = next(r for r in report["components"] if r["name"] == "inpaint/text_encoder")
    assert te["shared_with"] == ["demo"]


def test_unloading_frees_only_what_no_other_checkpoint_uses():
    studio = fresh()
    studio.load_companion("inpaint", "demo-inpaint")
    unet = weakref.ref(studio._companions["inpaint"].components["unet"])
    text_encoder = studio.pool.components["text_encoder"]
    studio.unload_companion("inpaint")
    gc.collect()
    assert unet() is None
    assert studio.pool.components["text_encoder"] is text_encoder


def test_switching_to_a_fine_tune_keeps_the_identical_parts():
    studio = fresh()
    text_encoder, vae = studio.pool.components["text_encoder"], studio.pool.components["vae"]
    old_unet = weakref.ref(studio.pool.components["unet"])
    studio.load("demo-inpaint", variant="default", dtype="float32")
    assert studio.pool.components["text_encoder"] is text_encoder and studio.pool.components["vae"] is vae
    gc.collect()
    assert old_unet() is None, "the old UNet, used by nothing now, is freed"


def test_another_dtype_is_another_module():
    studio = fresh()
    text_encoder = studio.pool.components["text_encoder"]
    assert {p.dtype for p in text_encoder.parameters()} == {torch.float32}
    studio.load("demo", variant="default", dtype="bfloat16")
    again = studio.pool.components["text_encoder"]
    assert again is not text_encoder, "the float32 module is not handed to a bfloat16 load"
    assert {p.dtype for p in again.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in text_encoder.parameters()} == {torch.float32}, "nor cast in place"


def test_shared_with_names_only_checkpoints_still_loaded():
    studio = fresh()
    vae = studio.pool.components["vae"]
    studio.load("demo-sdxl", dtype="float32")  # its VAE files are the demo's: the module is taken over
    assert studio.pool.components["vae"] is vae
    rows = {row["name"]: row for row in studio.memory_report()["components"]}
    assert rows["vae"]["checkpoint"] == "demo-sdxl" and rows["vae"]["shared_with"] == [], "demo is gone"


def test_a_module_accelerate_keeps_offloaded_is_not_handed_to_a_new_companion():
    """Sequential offload leaves a module's weights on `meta` behind accelerate's hooks; a companion handed that
    module failed to load, with the misleading "If a weight file is damaged..." advice. In the app only a GPU
    offloads; here accelerate's own `cpu_offload` puts the same hooks on, on the CPU."""
    import accelerate
    import torch
    from PIL import Image

    from core.generation import GenerationRequest

    studio = fresh()
    text_encoder = studio.pool.components["text_encoder"]
    accelerate.cpu_offload(text_encoder, execution_device=torch.device("cpu"))
    assert next(text_encoder.parameters()).device.type == "meta", "the stand-in really offloads"
    studio.load_companion("inpaint", "demo-inpaint")
    companion = studio._companions["inpaint"].components
    assert companion["text_encoder"] is not text_encoder, "a clean copy, loaded from its files"
    assert companion["vae"] is studio.pool.components["vae"], "what is not hooked is still shared"
    image = Image.new("RGB", (64, 64), (90, 120, 200))
    mask = Image.new("L", (64, 64), 255)
    request = GenerationRequest(task="inpaint", prompt="a kite", image=image, mask=mask, steps=2, seed=1)
    assert studio.generate(request).images[0].size == (64, 64)
