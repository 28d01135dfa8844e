"""Batched visitors: requests that arrive together run as one call, and each visitor gets what they'd get alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.batching import Batcher, BatchRun, Member, batch_key
from core.errors import InvalidRequest
from core.generation import ALONE_TOLERANCE, GenerationRequest
from core.jobs import Worker
from core.studio import Studio, StudioOptions

STEPS = 5


@pytest.fixture(scope="module", params=["demo", "demo-sdxl"])
def studio(request) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True))
    studio.load(request.param, variant="default", dtype="float32")
    return studio


def ask(prompt: str, seed: int, num_images: int = 1, **extra) -> GenerationRequest:
    extra.setdefault("scheduler", "Euler")  # one UNet call a step (the demo's PNDM adds a warm-up call)
    return GenerationRequest(prompt=prompt, seed=seed, num_images=num_images, steps=STEPS, width=64, height=64, **extra)


class UnetCalls:
    """The batch size of every UNet call (classifier-free guidance doubles it)."""

    def __init__(self, studio: Studio) -> None:
        self.sizes: list[int] = []
        unet = studio.pool.components["unet"]
        self.hook = unet.register_forward_pre_hook(
            lambda _m, args, kwargs: self.sizes.append(len(args[0])), with_kwargs=True
        )

    def __enter__(self) -> UnetCalls:
        return self

    def __exit__(self, *exc) -> None:
        self.hook.remove()


def differ(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def stop_at(step: int) -> tuple[threading.Event, object, list]:
    """A cancel flag set when the run reports `step`, as a Stop pressed then; its step callback; the steps seen."""
    flag, seen = threading.Event(), []

    def on_step(done: int, total: int) -> None:
        seen.append(done)
        if done == step:
            flag.set()

    return flag, on_step, seen


def test_visitors_in_one_call_get_their_alone_images_info_and_script(studio):
    requests = [ask("a red fox", 5, 2), ask("a blue bird", 11), ask("a red fox", 40)]
    reports = [[] for _ in requests]
    members = [
        Member(r, on_step=lambda done, total, seen=seen: seen.append((done, total)))
        for r, seen in zip(requests, reports, strict=True)
    ]
    with UnetCalls(studio) as calls:
        studio.generate_batch(members)
    assert calls.sizes == [2 * 4] * STEPS, "one UNet call a step for the 4 images (and their unconditional half)"
    for request, member, seen in zip(requests, members, reports, strict=True):
        batched = member.future.result(timeout=0)
        alone = studio.generate(request)
        assert batched.info["batch"] == {"visitors": 3, "images": 4}
        assert batched.info["seeds"] == alone.info["seeds"] and batched.info["prompt"] == request.prompt
        assert batched.info["code"] == alone.info["code"], "the script is the visitor's own request, alone"
        assert len(batched.images) == request.num_images
        for mine, theirs in zip(batched.images, alone.images, strict=True):
            assert differ(mine, theirs) <= ALONE_TOLERANCE["float32"]
        assert seen[-1] == (STEPS, STEPS) and not batched.info["interrupted"]
    assert differ(members[0].future.result().images[0], members[2].future.result().images[0]) > 20, "own seeds"


def test_a_visitor_who_stops_gets_that_step_and_the_others_run_on(studio):
    flag, on_step, seen = stop_at(2)
    stopper = Member(ask("a lighthouse", 3), on_step=on_step, cancel=flag)
    stayer = Member(ask("a harbour", 8))
    with UnetCalls(studio) as calls:
        studio.generate_batch([stopper, stayer])
    assert len(calls.sizes) == STEPS, "the call went on for the visitor who didn't stop"
    stopped, full = stopper.future.result(), stayer.future.result()
    assert stopped.info["interrupted"] and stopped.info["stopped_at_step"] == 2
    assert not full.info["interrupted"]
    assert max(seen) == 2, "no progress is reported to a visitor after their Stop"

    alone_flag, alone_step, _seen = stop_at(2)
    alone = studio.generate(ask("a lighthouse", 3), on_step=alone_step, cancel=alone_flag)
    assert alone.info["stopped_at_step"] == 2
    assert differ(stopped.images[0], alone.images[0]) <= ALONE_TOLERANCE["float32"], "the image at step 2, as alone"
    assert differ(full.images[0], studio.generate(ask("a harbour", 8)).images[0]) <= ALONE_TOLERANCE["float32"]


def test_the_call_ends_when_every_visitor_in_it_has_stopped(studio):
    members = []
    for seed in (1, 2):
        flag, on_step, _seen = stop_at(2)
        members.append(Member(ask("a kite", seed), on_step=on_step, cancel=flag))
    with UnetCalls(studio) as calls:
        studio.generate_batch(members)
    assert len(calls.sizes) == 2
    assert [m.future.result().info["stopped_at_step"] for m in members] == [2, 2]
    assert all(len(m.future.result().images) == 1 for m in members)


def test_what_may_share_a_call():
    plain = ask("a", 1)
    assert batch_key(plain) == batch_key(ask("another prompt", 99, 3, preview_every=2))
    assert batch_key(plain) != batch_key(ask("a", 1, scheduler="Euler a"))
    assert batch_key(plain) != batch_key(ask("a", 1, guidance_scale=3.0))
    assert batch_key(plain) != batch_key(ask("a", 1, negative_prompt="blurry")), "SDXL reads no negative as zeros"
    assert batch_key(ask("a", 1, sag_scale=0.5)) is None and batch_key(ask("a", 1, refiner_switch=0.8)) is None
    assert batch_key(GenerationRequest(task="img2img", prompt="a")) is None
    from PIL import Image

    assert batch_key(ask("a", 1, ip_adapter_image=Image.new("RGB", (8, 8)))) is None, "a visitor's own upload"
    assert batch_key(ask("a", 1, step_cache=True)) != batch_key(ask("a", 1, step_cache=1)), "a wrong type is its own"


def test_the_batcher_gathers_what_arrives_during_a_run_and_a_bad_request_fails_alone(studio):
    worker = Worker()
    batcher = Batcher(worker, studio.generate_batch, max_images=3)
    busy, release = threading.Event(), threading.Event()
    worker.submit(lambda: (busy.set(), release.wait(30)))
    assert busy.wait(30)
    members = [
        Member(ask("one", 1)),
        Member(ask("bad", -5)),  # the same key, an invalid seed: it fails, the others run
        Member(ask("two", 2)),
        Member(ask("three", 3)),  # over the 3 images a call takes: the next call
        Member(ask("four", 5, scheduler="Euler a")),  # another key: its own call
    ]
    futures = [batcher.submit(m) for m in members]
    release.set()
    results = [f.exception(timeout=120) or f.result() for f in futures]
    assert isinstance(results[1], InvalidRequest) and "seed" in str(results[1])
    assert results[0].info["batch"] == {"visitors": 2, "images": 2} == results[2].info["batch"]
    assert "batch" not in results[3].info, "alone in its own call: the first was full"
    assert "batch" not in results[4].info and results[4].info["scheduler"] == "Euler a"


def test_a_shared_call_that_fails_runs_each_request_alone(studio, monkeypatch):
    import torch

    def out_of_memory(self, arguments, pipe):
        raise torch.OutOfMemoryError("the batch does not fit")

    monkeypatch.setattr(BatchRun, "merge", out_of_memory)
    members = [Member(ask("a fox", 1)), Member(ask("a hen", 2))]
    studio.generate_batch(members)
    for member, seed in zip(members, (1, 2), strict=True):
        result = member.future.result(timeout=0)
        assert "batch" not in result.info and result.info["seeds"] == [seed], "each ran alone, and got their images"
        assert len(result.images) == 1


def test_a_stop_late_in_a_second_order_run_stops_as_it_would_alone(studio):
    """Heun runs 2N-1 scheduler steps for N asked; progress says N. A Stop at asked step 4 of 5 (scheduler step 6
    of 9) ends the visitor's part there, as it ends their run alone."""
    heun = dict(scheduler="Heun")
    flag, on_step, _seen = stop_at(4)
    stopper = Member(ask("a lighthouse", 3, **heun), on_step=on_step, cancel=flag)
    stayer = Member(ask("a harbour", 8, **heun))
    studio.generate_batch([stopper, stayer])
    stopped = stopper.future.result()
    alone_flag, alone_step, _seen = stop_at(4)
    alone = studio.generate(ask("a lighthouse", 3, **heun), on_step=alone_step, cancel=alone_flag)
    assert alone.info["interrupted"] and stopped.info["interrupted"], "stopped, as alone"
    assert stopped.info["stopped_at_step"] == alone.info["stopped_at_step"]
    assert differ(stopped.images[0], alone.images[0]) <= ALONE_TOLERANCE["float32"]
    assert not stayer.future.result().info["interrupted"]


def test_a_request_stopped_while_it_waited_runs_nothing(studio):
    from core.errors import Stopped

    gone = Member(ask("never mind", 1), cancel=threading.Event())
    gone.cancel.set()  # Stop pressed (or the tab closed) before the call began
    others = [Member(ask("a fox", 2)), Member(ask("a hen", 3))]
    with UnetCalls(studio) as calls:
        studio.generate_batch([gone, *others])
    assert isinstance(gone.future.exception(timeout=0), Stopped)
    assert calls.sizes == [2 * 2] * STEPS, "the call had the two others' rows only"
    assert all(m.future.result().info["batch"] == {"visitors": 2, "images": 2} for m in others)
