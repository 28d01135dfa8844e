"""Swapping the VAE: from a folder with or without `vae/`, from a Hub id, and back to the checkpoint's own."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from diffusers import AutoencoderKL

from core.errors import LoadError
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions
from core.tasks import TASKS

TINY = dict(prompt="x", steps=2, width=64, height=64, seed=3)


@pytest.fixture(scope="module")
def other_vae(tmp_path_factory, demo_dir):
    """A VAE of the demo's architecture with different weights, saved as a checkpoint folder with `vae/`."""
    vae = AutoencoderKL.from_pretrained(demo_dir, subfolder="vae")
    torch.manual_seed(77)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    root = tmp_path_factory.mktemp("other-vae")
    vae.save_pretrained(root / "vae")
    return root


@pytest.fixture
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


@pytest.mark.parametrize("subfolder", [True, False], ids=["folder-with-vae", "vae-folder-itself"])
def test_swap_changes_every_task_and_default_restores(studio, other_vae, subfolder):
    original = studio.generate(GenerationRequest(**TINY)).images[0]
    old_vae = weakref.ref(studio.pool.components["vae"])
    source = str(other_vae if subfolder else other_vae / "vae")
    info = studio.set_vae(source)
    assert info["vae"] == source
    gc.collect()
    assert old_vae() is None, "the replaced VAE is released"
    new_vae = studio.pool.components["vae"]
    assert next(new_vae.parameters()).dtype == torch.float32
    swapped = studio.generate(GenerationRequest(**TINY))
    assert swapped.images[0].tobytes() != original.tobytes()
    assert "AutoencoderKL.from_pretrained" in swapped.info["code"]
    for task in ("img2img", "inpaint"):
        view = studio.pool.view(TASKS[task], scheduler=studio.pool.base.scheduler, safety_checker=False)
        assert view.vae is new_vae
    studio.set_vae("default")
    restored = studio.generate(GenerationRequest(**TINY)).images[0]
    assert restored.tobytes() == original.tobytes()


def test_swap_from_a_hub_id_in_the_cache(studio, other_vae, hub_cache):
    hub_cache(other_vae / "vae", "studio-tests/other-vae")
    before = studio.generate(GenerationRequest(**TINY)).images[0].tobytes()
    info = studio.set_vae("studio-tests/other-vae")
    assert info["vae"] == "studio-tests/other-vae"
    expected = AutoencoderKL.from_pretrained(other_vae / "vae").state_dict()
    in_use = studio.pool.components["vae"].state_dict()
    assert expected.keys() == in_use.keys()
    assert all(torch.equal(in_use[k], expected[k]) for k in expected), "the cached VAE's weights are the ones in use"
    after = studio.generate(GenerationRequest(**TINY))
    assert after.images[0].tobytes() != before and after.info["vae"] == "studio-tests/other-vae"


def test_a_failed_swap_keeps_the_current_vae(studio, tmp_path):
    vae = studio.pool.components["vae"]
    with pytest.raises(LoadError, match="holds no VAE"):
        studio.set_vae(str(tmp_path))
    with pytest.raises(LoadError, match="not in the local cache") as offline:
        studio.set_vae("nobody/no-vae")
    # `demo` is a checkpoint, not a VAE: the advice offline was once "or load `demo`".
    assert "demo" not in str(offline.value) and "keep `default`" in str(offline.value)
    assert studio.pool.components["vae"] is vae
    assert studio.generate(GenerationRequest(**TINY)).images


def test_a_broken_variant_file_is_reported_not_replaced_by_the_default_weights(demo_dir, tmp_path):
    """Any ValueError from the variant file (a wrong shape here) once fell back to the default weights in silence."""
    import shutil

    from safetensors.torch import load_file, save_file

    from core.checkpoints import loading

    vae = tmp_path / "vae"
    shutil.copytree(demo_dir / "vae", vae)
    weights = load_file(vae / "diffusion_pytorch_model.safetensors")
    name = next(k for k, v in weights.items() if v.dim() == 4)
    weights[name] = torch.zeros(1, 1, 1, 1)
    save_file(weights, vae / "diffusion_pytorch_model.fp16.safetensors")
    options = StudioOptions(device="cpu", offline=True)
    with pytest.raises(LoadError, match="Loading the VAE 'broken' failed"):
        loading.load_vae(str(tmp_path), "vae", variant="fp16", dtype=torch.float32, options=options, label="broken")
    (vae / "diffusion_pytorch_model.fp16.safetensors").unlink()  # no such variant: the default weights
    fallback = loading.load_vae(str(tmp_path), "vae", variant="fp16", dtype=torch.float32, options=options, label="ok")
    assert isinstance(fallback, AutoencoderKL)
