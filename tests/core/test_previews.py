"""Live previews: a picture of the latents every N steps, without a VAE decode, not changing the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.previews import latent_preview
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=6, width=96, height=64, seed=17, safety_checker=False, num_images=2)


@pytest.fixture(scope="module")
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def test_previews_arrive_every_n_steps_and_leave_the_images_unchanged(studio):
    plain = studio.generate(GenerationRequest(**T2I))
    shown: list[list] = []
    result = studio.generate(GenerationRequest(**T2I, preview_every=2), on_preview=shown.append)
    assert len(shown) == 3, "steps 2, 4 and 6"
    assert all(len(batch) == 2 and batch[0].size == (12, 8) and batch[0].mode == "RGB" for batch in shown)
    assert [im.tobytes() for im in result.images] == [im.tobytes() for im in plain.images]
    assert np.asarray(shown[0][0]).std() > 0, "a picture, not a flat colour"
    assert studio.generate(GenerationRequest(**T2I), on_preview=shown.append) and len(shown) == 3, "0 = off"


def test_previews_follow_the_latent_space():
    blue = torch.zeros(1, 4, 2, 2)
    blue[:, 3] = -1.0  # SD's fourth latent channel runs from yellow to blue
    r, g, b = np.asarray(latent_preview(blue)[0])[0, 0].astype(int)
    assert b > r and b > g and b > 200
    grey = np.asarray(latent_preview(torch.zeros(1, 4, 2, 2))[0])
    assert np.all(np.abs(grey.astype(int) - 128) <= 1)
    xl = np.asarray(latent_preview(torch.zeros(1, 4, 2, 2), "stable-diffusion-xl")[0])
    assert not np.array_equal(xl, grey), "SDXL has its own offsets"
    sd3 = latent_preview(torch.randn(2, 16, 4, 6))  # other spaces: first three channels, stretched
    assert len(sd3) == 2 and sd3[0].size == (6, 4) and np.asarray(sd3[0]).max() == 255
    video = latent_preview(torch.randn(1, 4, 3, 4, 4))  # AnimateDiff: (B, C, frames, H, W) -> the first frame
    assert video[0].size == (4, 4)


def test_a_bad_preview_interval_is_a_clear_error(studio):
    with pytest.raises(InvalidRequest, match="preview_every"):
        studio.generate(GenerationRequest(**T2I, preview_every=-1))
