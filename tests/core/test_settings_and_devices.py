"""Settings from flags and environment, and device/dtype choice and memory readings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core import devices
from core.errors import InvalidRequest
from core.settings import from_args, read_config

CONFIG = {
    "default_model": "org/base",
    "models": [{"id": "org/base", "label": "Base"}, {"id": "demo", "label": "Demo"}],
    "vaes": ["org/vae"],
    "public": {"limits": {"max_side": 1024, "max_steps": 50}, "max_upload_mb": 10, "queue_size": 20},
}


def test_defaults_and_flags():
    s = from_args([], env={}, config=CONFIG)
    assert (s.model, s.host, s.port, s.public, s.outputs) == ("org/base", "127.0.0.1", 7860, False, Path("outputs"))
    assert s.studio_options().allowed_models is None and s.limits.max_steps == 150
    s = from_args(
        ["--model", "demo", "--port", "9000", "--dtype", "bfloat16", "--outputs", "/x"], env={}, config=CONFIG
    )
    assert (s.model, s.port, s.dtype, s.outputs) == ("demo", 9000, "bfloat16", Path("/x"))


def test_batched_visitors_are_on_by_default_and_one_turns_them_off():
    from core.jobs import CancelFlags, Worker
    from core.studio import Studio, StudioOptions
    from ui.common import AppContext

    studio = Studio(StudioOptions(device="cpu"))
    for argv, batched in (
        ([], 4),
        (["--batch-visitors", "2"], 2),
        (["--batch-visitors", "1"], None),
        (["--batch-visitors", "0"], None),
    ):
        settings = from_args(argv, env={}, config=CONFIG)
        ctx = AppContext(studio=studio, settings=settings, cancel_flags=CancelFlags(), worker=Worker())
        assert (ctx.batcher.max_members if ctx.batcher else None) == batched, argv


def test_share_and_spaces_turn_on_public_mode_with_its_limits():
    for argv, env in ((["--share"], {}), ([], {"SPACE_ID": "me/studio"}), (["--public"], {})):
        s = from_args(argv, env=env, config=CONFIG)
        assert s.public
        assert s.limits.max_side == 1024 and s.limits.max_steps == 50
        assert s.max_upload_bytes == 10 * 1024 * 1024 and s.queue_size == 20
        options = s.studio_options()
        assert (
            options.public and options.allowed_models == ("org/base", "demo") and options.allowed_vaes == ("org/vae",)
        )
    assert from_args([], env={"SPACE_ID": "me/studio"}, config=CONFIG).host == "0.0.0.0"


def test_auth_and_offline():
    assert from_args(["--auth", "ann:pw"], env={}, config=CONFIG).auth == ("ann", "pw")
    with pytest.raises(SystemExit, match="USER:PASS"):
        from_args(["--auth", "nopassword"], env={}, config=CONFIG)
    assert from_args([], env={"HF_HUB_OFFLINE": "1"}, config=CONFIG).offline
    assert from_args(["--offline"], env={}, config=CONFIG).offline


def test_the_shipped_config_names_the_demo_and_a_default():
    config = read_config()
    ids = [m["id"] for m in config["models"]]
    assert "demo" in ids and config["default_model"] in ids


def test_dtype_choice():
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if devices.cpu_supports_bf16() else torch.float32
    assert devices.resolve_dtype("auto", cpu) == expected
    assert devices.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert devices.resolve_dtype("float32", cpu) == torch.float32
    with pytest.raises(InvalidRequest, match="float16 is not supported on the CPU"):
        devices.resolve_dtype("float16", cpu)
    with pytest.raises(InvalidRequest, match="Unknown dtype"):
        devices.resolve_dtype("float8", cpu)


def test_missing_device_is_refused_with_advice():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidRequest, match="not available on this machine; use --device auto or cpu"):
        devices.resolve_device("cuda")
    assert devices.resolve_device("auto") == torch.device("cpu")


def test_cuda_memory_is_read_through_torchs_allocator_apis(monkeypatch):
    # No GPU here: stand in for the documented torch.cuda functions and check each figure lands where it should.
    gib = 1024**3
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (6 * gib, 24 * gib))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake RTX")
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 5 * gib)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 7 * gib)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 9 * gib)
    m = devices.read_memory(torch.device("cuda"))
    assert (m.device, m.device_name, m.total_bytes, m.free_bytes) == ("cuda:0", "Fake RTX", 24 * gib, 6 * gib)
    assert (m.allocated_bytes, m.reserved_bytes, m.peak_bytes) == (5 * gib, 7 * gib, 9 * gib)
    assert m.process_rss_bytes > 0


def test_an_unreadable_cuda_device_says_so_instead_of_reporting_host_ram(monkeypatch):
    # ZeroGPU's main process has no GPU attached between generations; the memory panel must keep working, and
    # preflight must not judge "fits" against host RAM under the GPU's name (it did).
    from core.checkpoints.hub import _report

    def no_gpu(*args):
        raise RuntimeError("No CUDA GPUs are available")

    monkeypatch.setattr(torch.cuda, "current_device", no_gpu)
    m = devices.read_memory(torch.device("cuda"))
    assert m.device == "cuda" and not m.readable and m.free_bytes == 0 and m.process_rss_bytes > 0
    assert "can't be read" in m.device_name
    files = type("Files", (), {"source": "x", "is_hub": False, "pipeline_class": "P", "variants": ("default",)})()
    report = _report(files, "default", torch.float16, torch.device("cuda"), {}, [{"bytes": 10}])
    assert report["verdict"].startswith("unknown")


def test_xpu_memory_is_read_like_cuda(monkeypatch):
    # No Intel GPU here either: torch.xpu has the same documented functions as torch.cuda.
    gib = 1024**3
    for name, value in (
        ("current_device", lambda: 0),
        ("mem_get_info", lambda i: (3 * gib, 16 * gib)),
        ("get_device_name", lambda i: "Fake Arc"),
        ("memory_allocated", lambda i: gib),
        ("memory_reserved", lambda i: 2 * gib),
        ("max_memory_allocated", lambda i: 4 * gib),
    ):
        monkeypatch.setattr(torch.xpu, name, value)
    m = devices.read_memory(torch.device("xpu"))
    assert (m.device, m.device_name, m.free_bytes, m.peak_bytes) == ("xpu:0", "Fake Arc", 3 * gib, 4 * gib)
