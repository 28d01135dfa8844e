"""Which pool and which view serve a request: the main checkpoint or a companion, the task's view or an option's
(SAG, PAG, the refiner), the motion UNet for animations. A mixin of the Studio."""

from __future__ import annotations

from typing import Any

from diffusers import DiffusionPipeline

from core import runs, schedulers
from core.errors import InvalidRequest, NotLoaded
from core.generation import GenerationRequest
from core.pool import Pool
from core.tasks import Task, family_of


class ViewsMixin:
    """Uses the Studio's pools (`pool`, `_companions`) and motion adapter."""

    _companions: dict[str, Pool]

    def _pool_for(self, task: Task, request: GenerationRequest) -> Pool:
        if task.kind == "companion":
            kind = f"upscale_{request.upscaler}" if task.name == "upscale" else task.companions[0]
            if kind not in self._companions:
                raise NotLoaded(
                    f"{task.label} needs its own checkpoint ({kind.replace('_', ' ')}): load the companion "
                    f"offered in its tab (e.g. `demo-{kind.replace('_', '-')}` offline) first."
                )
            return self._companions[kind]
        if task.name == "inpaint" and "inpaint" in self._companions:
            return self._companions["inpaint"]  # a 9-channel inpainting UNet does better than the base one
        pool = self.pool
        if not pool.supports(task.name):
            raise NotLoaded(f"The loaded {pool.files.pipeline_class} can't do {task.label}.")
        if task.kind == "animate" and self.motion is None:
            raise NotLoaded("Animate needs a motion adapter: load the one offered in its tab first.")
        return pool

    def _view(
        self, pool: Pool, task: Task, request: GenerationRequest, scheduler: Any, run_checker: bool
    ) -> DiffusionPipeline:
        checker: dict[str, Any] = {}
        if "safety_checker" in pool.components:
            checker = {
                "safety_checker": pool.components["safety_checker"] if run_checker else None,
                "requires_safety_checker": run_checker,
            }
        if task.kind == "companion" or pool.companion_kind is not None:
            pipe = pool.view_as(task.name, scheduler=scheduler, **checker)
            if task.name == "rgbd":
                pipe.image_processor = runs.ldm3d_image_processor(pipe.vae_scale_factor)
            return pipe
        if task.name == "text2img" and request.sag_scale > 0:
            return pool.view_as("sag", scheduler=scheduler, **checker)
        if task.name == "text2img" and request.pag_scale > 0:
            return pool.view_as("pag", scheduler=scheduler, pag_applied_layers=["mid"], **checker)
        if task.kind == "feature":
            return pool.view_as(task.name, scheduler=scheduler, **checker)
        if task.kind == "animate":
            assert self.motion is not None
            if self.loras.loras:
                # A motion UNet built before the LoRA ignored it; one built after failed inside diffusers'
                # from_unet2d. Say so instead of either.
                raise InvalidRequest(
                    "Animate can't use a LoRA yet: AnimateDiff builds its motion UNet from the plain UNet. Unload "
                    f"{', '.join(self.loras.loras)} in the LoRA panel, then animate."
                )
            unet = self.motion.unet_for(pool)
            return pool.view_as("animate", scheduler=scheduler, unet=unet, motion_adapter=self.motion.adapter)
        return pool.view(task, scheduler=scheduler, safety_checker=run_checker)

    def _refiner(self, pool: Pool, task: Task, request: GenerationRequest) -> DiffusionPipeline | None:
        """The refiner's view for a two-stage SDXL run, or None for a one-stage run."""
        if task.name != "text2img" or request.refiner_switch <= 0:
            return None
        if family_of(type(pool.base).__name__) != "stable-diffusion-xl":
            raise InvalidRequest(f"The refiner is SDXL's second stage, not {type(pool.base).__name__}'s: set it to 0.")
        if "refiner" not in self._companions:
            raise NotLoaded("Load the SDXL refiner in Text to image (`demo-refiner` offline) first, or set it to 0.")
        refiner = self._companions["refiner"]
        return refiner.view_as("text2img", scheduler=schedulers.build(request.scheduler, refiner.base.scheduler))
