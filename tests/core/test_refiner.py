"""SDXL's refiner as an optional second stage of text to image: it shares the base's text encoder and VAE, takes
over the latents at the switch point, reports one progress bar, and the snippet repeats both stages."""

from __future__ import annotations

import runpy

import pytest
from PIL import Image

from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a dune", steps=6, width=64, height=64, seed=8, safety_checker=False)


@pytest.fixture(scope="module")
def sdxl() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo-sdxl", variant="default", dtype="float32")
    return studio


def pixels(studio: Studio, **fields) -> bytes:
    return studio.generate(GenerationRequest(**{**T2I, **fields})).images[0].tobytes()


def test_the_refiner_must_be_loaded_and_is_for_sdxl_only(sdxl):
    with pytest.raises(NotLoaded, match="Load the SDXL refiner"):
        sdxl.generate(GenerationRequest(**T2I, refiner_switch=0.8))
    with pytest.raises(InvalidRequest, match="below 1"):
        sdxl.generate(GenerationRequest(**T2I, refiner_switch=1.0))
    demo = Studio(StudioOptions(device="cpu", offline=True))
    demo.load("demo", variant="default", dtype="float32")
    with pytest.raises(InvalidRequest, match="second stage, not StableDiffusionPipeline's"):
        demo.generate(GenerationRequest(**T2I, refiner_switch=0.8))


def test_two_stages_share_the_text_encoder_and_vae_and_change_the_image(sdxl, tmp_path, monkeypatch):
    plain = pixels(sdxl)
    before = sdxl.memory_report()["pool_bytes"]
    sdxl.load_companion("refiner", "demo-refiner")
    try:
        refiner = sdxl.companion("refiner")
        assert refiner.components["text_encoder_2"] is sdxl.pool.components["text_encoder_2"]
        assert refiner.components["vae"] is sdxl.pool.components["vae"]
        report = sdxl.memory_report()
        assert report["pool_bytes"] - before == refiner.components["unet"].num_parameters() * 4, "only its UNet"
        rows = {row["name"]: row for row in report["components"]}
        assert rows["refiner/text_encoder_2"]["shared_with"] == ["demo-sdxl"]

        assert pixels(sdxl) == plain, "a loaded refiner changes nothing until asked for"
        steps: list[tuple[int, int]] = []
        result = sdxl.generate(GenerationRequest(**T2I, refiner_switch=0.5), on_step=lambda d, t: steps.append((d, t)))
        refined = result.images[0].tobytes()
        assert refined != plain and result.images[0].size == (64, 64)
        assert result.info["refiner"] == "demo-refiner" and result.info["refiner_switch"] == 0.5
        assert all(total == 6 for _done, total in steps) and steps[-1] == (6, 6), steps
        assert [done for done, _ in steps] == sorted(done for done, _ in steps), "one bar, never going back"
        assert pixels(sdxl, refiner_switch=0.5) == refined, "seeded two-stage runs repeat"
        assert pixels(sdxl, refiner_switch=0.5, scheduler="DDIM") != refined

        code = result.info["code"]
        assert "denoising_end=0.5" in code and "refiner(" in code and "denoising_start=0.5" in code
        (tmp_path / "reproduce.py").write_text(code)
        monkeypatch.chdir(tmp_path)
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        assert Image.open(tmp_path / "image.png").tobytes() == refined

        batch = sdxl.generate(GenerationRequest(**{**T2I, "num_images": 2}, refiner_switch=0.5))
        (tmp_path / "reproduce.py").write_text(batch.info["code"])
        runpy.run_path(str(tmp_path / "reproduce.py"), run_name="__main__")
        made = [Image.open(tmp_path / f"image-{i}.png").tobytes() for i in (1, 2)]
        assert made == [im.tobytes() for im in batch.images], "both stages made again as the same batch"
    finally:
        sdxl.unload_companion("refiner")
    assert sdxl.memory_report()["pool_bytes"] == before


def test_stop_in_the_first_stage_still_gives_an_image(sdxl):
    import threading

    sdxl.load_companion("refiner", "demo-refiner")
    calls = {"base": 0, "refiner": 0}
    unets = {"base": sdxl.pool.components["unet"], "refiner": sdxl._companions["refiner"].components["unet"]}
    hooks = [
        unet.register_forward_hook(lambda *_, _stage=stage: calls.__setitem__(_stage, calls[_stage] + 1))
        for stage, unet in unets.items()
    ]
    try:
        cancel = threading.Event()

        def stop_early(done: int, _total: int) -> None:
            if done >= 1:
                cancel.set()

        result = sdxl.generate(GenerationRequest(**T2I, refiner_switch=0.5), on_step=stop_early, cancel=cancel)
        assert result.info["interrupted"] is True and len(result.images) == 1
        # Of 6 steps (3 + 3): the base's first, then the refiner's first, which a Stop leaves to decode the image.
        assert calls == {"base": 1, "refiner": 1}
        assert result.info["stopped_at_step"] == 1, "where the Stop came"
    finally:
        for hook in hooks:
            hook.remove()
        sdxl.unload_companion("refiner")
