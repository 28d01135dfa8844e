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

import inspect
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
    max_guidance: float | None  # above this the images burn; a request above it gets a warning
    family: bool = False  # not a few-step model: an image family's own settings (FAMILY_SETTINGS)

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


# The image families beyond Stable Diffusion, whose pipelines default to other steps and guidance than the tabs'
# (25 steps, 7.5): their names, and what a user should know first. The values are the pipelines' own defaults
# (`family_settings` reads them from the call's signature), as diffusers' docs and the model cards use them.
FAMILY_SETTINGS = {
    "kandinsky": ("Kandinsky 2.1", "a prior turns the prompt into a CLIP image embedding, a decoder paints it"),
    "kandinsky22": ("Kandinsky 2.2", "a prior turns the prompt into a CLIP image embedding, a decoder paints it"),
    "kandinsky3": ("Kandinsky 3", "sizes in steps of 64"),
    "wuerstchen": ("Wuerstchen", "a prior in a 42x smaller space, then a decoder; sizes in steps of 128"),
    "cascade": ("Stable Cascade", "a prior in a 42x smaller space, then a decoder; sizes in steps of 128"),
    "pixart-alpha": ("PixArt-α", "a T5 text encoder: long, descriptive prompts work best"),
    "pixart-sigma": ("PixArt-Σ", "a T5 text encoder: long, descriptive prompts work best"),
    "if": ("DeepFloyd IF", "stage I paints 64 px images; its super-resolution stages run in the Pipeline tab"),
    "flux": ("Flux", "the guidance is an input of the distilled model, not a second pass"),
    "auraflow": ("AuraFlow", "a flow-matching transformer with a UMT5 text encoder"),
    "sana": ("Sana", "a Gemma 2 encoder and a 32x DC-AE; it renders at its nearest trained size, then resizes"),
    "lumina": ("Lumina-Next", "a flow-matching Next-DiT with a Gemma text encoder; sizes in steps of 16"),
    "lumina2": ("Lumina Image 2.0", "a Gemma 2 encoder reads a system prompt before yours; sizes in steps of 16"),
}


def family_settings(pipeline: type, family: str | None) -> FewStep | None:
    """The steps and guidance the family's pipeline defaults to, for the tabs to start from, or None for SD's.
    In a combined pipeline (prior and decoder) the prior's: the tabs' steps run in both stages."""
    if family not in FAMILY_SETTINGS:
        return None
    name, note = FAMILY_SETTINGS[family]
    defaults = {n: p.default for n, p in inspect.signature(pipeline.__call__).parameters.items()}
    steps = defaults.get("prior_num_inference_steps", defaults.get("num_inference_steps"))
    guidance = defaults.get("prior_guidance_scale", defaults.get("guidance_scale"))
    if not isinstance(steps, int) or not isinstance(guidance, (int, float)):
        return None
    if "prior_num_inference_steps" in defaults:
        note += "; the steps run in both stages"
    return FewStep(name, steps, float(guidance), "default", note, None, family=True)


def warnings(few_step: FewStep | None, steps: int, guidance_scale: float) -> list[str]:
    """What to tell a run that uses a few-step model far from its settings."""
    if few_step is None or few_step.family:
        return []
    notes = []
    if few_step.max_guidance is not None and guidance_scale > few_step.max_guidance:
        notes.append(
            f"{few_step.name} was distilled for guidance {few_step.guidance_scale:g}; guidance_scale "
            f"{guidance_scale:g} over-saturates its images."
        )
    if steps > 4 * max(few_step.steps, 2):
        notes.append(f"{few_step.name} makes its image in about {few_step.steps} steps; {steps} only cost time.")
    return notes
