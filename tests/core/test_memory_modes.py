"""Memory modes: slicing and tiling reach every task view and turn off exactly; offloading is re-applied per view
and undone without reloading; the CPU refuses offloading with what to do instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.memory_modes import MemoryModes, ModeState, undo_offload
from core.studio import Studio, StudioOptions

T2I = dict(prompt="a lamp", steps=2, width=64, height=64, seed=17, safety_checker=False, num_images=2)
SOURCE = Image.new("RGB", (64, 64), (120, 40, 200))
TASKS = {
    "text2img": T2I,
    "img2img": dict(T2I, task="img2img", image=SOURCE, strength=0.8),
    "inpaint": dict(T2I, task="inpaint", image=SOURCE, mask=Image.new("L", (64, 64), 255), strength=1.0),
}


@pytest.fixture
def studio() -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load("demo", variant="default", dtype="float32")
    return studio


def run(studio: Studio, **fields) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in studio.generate(GenerationRequest(**fields)).images]


def test_slicing_and_tiling_reach_every_task_and_turning_them_off_restores_the_exact_images(studio, monkeypatch):
    before = {task: run(studio, **fields) for task, fields in TASKS.items()}
    vae = studio.pool.components["vae"]
    decoded_batches: list[int] = []
    tiled: list[tuple] = []
    original_decode, original_tiled = vae._decode, vae.tiled_decode
    monkeypatch.setattr(vae, "_decode", lambda z, **kw: decoded_batches.append(z.shape[0]) or original_decode(z, **kw))
    monkeypatch.setattr(vae, "tiled_decode", lambda z, **kw: tiled.append(z.shape) or original_tiled(z, **kw))

    info = studio.set_memory_modes(attention_slicing=True, vae_slicing=True, vae_tiling=True)
    assert info["memory_modes"] == {
        "offload": "none",
        "attention_slicing": True,
        "vae_slicing": True,
        "vae_tiling": True,
    }
    assert studio.memory_report()["memory_modes"]["vae_tiling"] is True
    processors = {type(p).__name__ for p in studio.pool.base.unet.attn_processors.values()}
    assert processors == {"SlicedAttnProcessor"}
    for task, fields in TASKS.items():
        decoded_batches.clear()
        images = run(studio, **fields)
        assert decoded_batches and set(decoded_batches) == {1}, f"{task}: the VAE decodes one image at a time"
        for got, want in zip(images, before[task], strict=True):  # sliced attention: the same maths, in pieces
            assert np.abs(got - want).max() <= 2, task
    # Tiling decodes in tiles once the latents are larger than the VAE's tile (512 px for the demo's VAE).
    run(studio, **{**T2I, "width": 576, "num_images": 1})
    assert tiled and tiled[-1][-1] == 576 // 8

    studio.set_memory_modes()
    assert {type(p).__name__ for p in studio.pool.base.unet.attn_processors.values()} == {"AttnProcessor2_0"}
    decoded_batches.clear()
    after = {task: run(studio, **fields) for task, fields in TASKS.items()}
    assert set(decoded_batches) == {2}, "one decode for the batch again"
    for task in TASKS:
        assert all(np.array_equal(a, b) for a, b in zip(after[task], before[task], strict=True)), task


def test_modes_follow_a_new_checkpoint_and_a_new_vae(studio):
    studio.set_memory_modes(vae_tiling=True, attention_slicing=True)
    studio.load("demo-sdxl", dtype="float32")
    assert studio.pool.components["vae"].use_tiling
    assert {type(p).__name__ for p in studio.pool.base.unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    studio.set_memory_modes()
    assert not studio.pool.components["vae"].use_tiling


def test_the_cpu_refuses_offloading_and_says_what_to_use(studio):
    plain = run(studio, **T2I)
    with pytest.raises(InvalidRequest, match=r"nothing to offload.*slicing"):
        studio.set_memory_modes(offload="model")
    with pytest.raises(InvalidRequest, match="offload must be one of"):
        MemoryModes(offload="gpu").check(torch.device("cuda"))
    assert all(np.array_equal(a, b) for a, b in zip(run(studio, **T2I), plain, strict=True))


def test_attention_slicing_and_an_ip_adapter_exclude_each_other_clearly(studio):
    studio.set_memory_modes(attention_slicing=True)
    with pytest.raises(InvalidRequest, match="turn slicing off"):
        studio.load_ip_adapter("demo-ip-adapter")
    studio.set_memory_modes()
    studio.load_ip_adapter("demo-ip-adapter")
    with pytest.raises(InvalidRequest, match="unload it to change attention slicing"):
        studio.set_memory_modes(attention_slicing=True)


def hooks_of(view) -> dict[str, str]:
    """The accelerate hook on each of a view's models (NoneType: none)."""
    names = ("text_encoder", "unet", "vae")
    return {name: type(getattr(view.components[name], "_hf_hook", None)).__name__ for name in names}


def test_model_offload_is_applied_to_every_new_view_and_undone_exactly(studio, monkeypatch):
    """accelerate's real hooks, put on by diffusers for every view a run builds, with the CPU as their execution
    device. What only a GPU shows: the weights moving between devices, and the memory saved."""
    offload = "model"
    before = {task: run(studio, **fields) for task, fields in TASKS.items()}
    hooks: list[dict[str, str]] = []
    prepare = studio.memory.prepare_view

    def spy(view, device):
        prepare(view, device)
        hooks.append(hooks_of(view))

    monkeypatch.setattr(studio.memory, "prepare_view", spy)
    # What set_memory_modes leaves on a GPU machine; a CPU one refuses it (the test below).
    studio.memory.modes = MemoryModes(offload=offload)
    during = {task: run(studio, **fields) for task, fields in TASKS.items()}
    assert hooks == [dict.fromkeys(("text_encoder", "unet", "vae"), "CpuOffload")] * len(TASKS), "every view"
    assert all(np.array_equal(a, b) for task in TASKS for a, b in zip(during[task], before[task], strict=True))

    studio.memory.apply([studio.pool.base], MemoryModes(), studio.device)
    for name in ("text_encoder", "unet", "vae"):
        module = studio.pool.components[name]
        assert not any(hasattr(m, "_hf_hook") for m in module.modules()), name
        assert {p.device.type for p in module.parameters()} == {"cpu"}, name
    hooks.clear()
    after = {task: run(studio, **fields) for task, fields in TASKS.items()}
    assert hooks == [dict.fromkeys(("text_encoder", "unet", "vae"), "NoneType")] * len(TASKS), "off: no hooks"
    assert all(np.array_equal(a, b) for task in TASKS for a, b in zip(after[task], before[task], strict=True))


def test_sequential_offload_hooks_every_new_view_and_is_undone_exactly(studio):
    """Sequential offload's real hooks on each task's view: weights kept aside, on `meta`. Running a view so
    hooked with the CPU as the execution device fails inside accelerate 1.15 under torch 2.13 (a plain diffusers
    pipeline too: a tied-weights map hands back a Tensor where a Parameter was), so the run itself is GPU-only."""
    before = {task: run(studio, **fields) for task, fields in TASKS.items()}
    studio.memory.modes = MemoryModes(offload="sequential")  # what set_memory_modes leaves on a GPU machine
    pool = studio.pool
    from core.tasks import get_task

    for task in TASKS:
        scheduler = pool.base.scheduler.__class__.from_config(pool.base.scheduler.config)
        view = pool.view(get_task(task), scheduler=scheduler, safety_checker=False)
        studio.memory.prepare_view(view, studio.device)
        assert hooks_of(view) == dict.fromkeys(("text_encoder", "unet", "vae"), "AlignDevicesHook"), task
        assert pool.components["unet"].conv_in.weight.device.type == "meta", "weights kept aside"
    studio.memory.apply([pool.base], MemoryModes(), studio.device)
    for name in ("text_encoder", "unet", "vae"):
        module = pool.components[name]
        assert not any(hasattr(m, "_hf_hook") for m in module.modules()), name
        assert {p.device.type for p in module.parameters()} == {"cpu"}, name
    after = {task: run(studio, **fields) for task, fields in TASKS.items()}
    assert all(np.array_equal(a, b) for task in TASKS for a, b in zip(after[task], before[task], strict=True))


def test_the_offload_decision_follows_the_modes_in_force():
    """Which of diffusers' two offloads each view is asked for (the call itself runs in the test above)."""
    calls = []

    class View:
        def enable_model_cpu_offload(self, device) -> None:
            calls.append(("model", str(device)))

        def enable_sequential_cpu_offload(self, device) -> None:
            calls.append(("sequential", str(device)))

    state, cuda = ModeState(), torch.device("cuda")
    for offload in ("model", "sequential", "none"):
        state.apply([], MemoryModes(offload=offload), cuda)
        state.prepare_view(View(), cuda)
    assert calls == [("model", "cuda"), ("sequential", "cuda")]


def test_undoing_offload_puts_whole_weights_back(studio):
    """accelerate's sequential offload (the hooks diffusers installs) keeps weights aside and leaves meta tensors;
    undoing it must give back the same module with its weights, without reloading."""
    from accelerate import cpu_offload

    text_encoder = studio.pool.components["text_encoder"]
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = text_encoder(ids).last_hidden_state
    cpu_offload(text_encoder, execution_device=torch.device("cpu"))
    assert any(p.device.type == "meta" for p in text_encoder.parameters()), "offloaded"
    undo_offload(studio.pool.base, torch.device("cpu"))
    assert not hasattr(text_encoder, "_hf_hook")
    assert all(p.device.type == "cpu" for p in text_encoder.parameters())
    with torch.no_grad():
        assert torch.equal(text_encoder(ids).last_hidden_state, expected)
