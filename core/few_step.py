"""Few-step models: checkpoints and LoRAs distilled to make an image in 1 to 8 steps, each with the scheduler,
steps and guidance it was distilled for. Run with a plain model's settings (25 steps, guidance 7.5) they give
over-saturated or burnt images, so the studio recognises them, says so on the page and sets those values.

- LCM (Latent Consistency Models): a checkpoint whose UNet takes the guidance as an embedding
  (`time_cond_proj_dim`, e.g. `SimianLuo/LCM_Dreamshaper_v7`, served by `LatentConsistencyModelPipeline`), 4 steps
  with its own LCM scheduler and guidance 8 (the embedding's w);
- LCM-LoRA (`latent-consistency/lcm-lora-sdv1-5`, `...-sdxl`) on any SD/SDXL base: the LCM scheduler, 4 steps,
  guidance 1 (it was distilled without classifier-free guidance); it composes with the other LoRAs;
- SD Turbo and SDXL Turbo (`stabilityai/sd-turbo`, `stabilityai/sdxl-turbo`), adversarially distilled: 1 step,
  guidance 0, their own Euler a scheduler with trailing timesteps.

LCM checkpoints are recognised by their UNet; LCM-LoRAs and Turbo checkpoints by name (nothing in their files
says what they are), as the other tools do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FewStep:
    """What a few-step model needs: its name, steps, guidance scale and scheduler (a user-facing name)."""

    name: str
    steps: int
    guidance_scale: float
    scheduler: str
    note: str
    max_guidance: float  # above this the images burn; a request above it gets a warning

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recognise(pipeline_class: str, unet: Any, source: str, family: str | None, loras: Iterable[str]) -> FewStep | None:
    """The few-step model the loaded checkpoint (with these LoRA sources) is, or None for a plain one."""
    config = getattr(unet, "config", None)
    if pipeline_class.startswith("LatentConsistencyModel") or getattr(config, "time_cond_proj_dim", None):
        return FewStep(
            "LCM", 4, 8.0, "default",
            "an LCM checkpoint: 2 to 8 steps with its LCM scheduler; guidance is an embedding here (8 is usual)",
            15.0,
        )  # fmt: skip
    if any("lcm" in lora.lower() for lora in loras):
        return FewStep(
            "LCM-LoRA", 4, 1.0, "LCM",
            "an LCM-LoRA is loaded: 2 to 8 steps with the LCM scheduler and guidance 1 to 2",
            2.0,
        )  # fmt: skip
    if "turbo" in source.lower():
        name = "SDXL Turbo" if family == "stable-diffusion-xl" else "SD Turbo"
        return FewStep(
            name, 1, 0.0, "default",
            f"{name}: 1 to 4 steps, guidance 0, its own scheduler; image to image needs steps × strength ≥ 1",
            1.0,
        )  # fmt: skip
    return None


def warnings(few_step: FewStep | None, steps: int, guidance_scale: float) -> list[str]:
    """What to tell a run that uses a few-step model far from its settings."""
    if few_step is None:
        return []
    notes = []
    if guidance_scale > few_step.max_guidance:
        notes.append(
            f"{few_step.name} was distilled for guidance {few_step.guidance_scale:g}; guidance_scale "
            f"{guidance_scale:g} over-saturates its images."
        )
    if steps > 4 * max(few_step.steps, 2):
        notes.append(f"{few_step.name} makes its image in about {few_step.steps} steps; {steps} only cost time.")
    return notes
