"""Each task's tab and endpoint come from its spec: the endpoint takes the spec's parameters by name and in order
(these names are public: scripts call them), and every tab has the same run controls and results."""

from __future__ import annotations

from core.tasks import TASKS
from tests.app import attack


def test_every_endpoint_takes_its_specs_parameters_in_order(running_app):
    endpoints = running_app.app.get_api_info()["named_endpoints"]
    for name, spec in TASKS.items():
        parameters = endpoints[f"/{name}"]["parameters"]
        assert [p["parameter_name"] for p in parameters] == [p.name for p in spec.params], name
    # The names scripts already use (README, "Use via API"), spelled out once here so a spec change shows.
    text2img = [p["parameter_name"] for p in endpoints["/text2img"]["parameters"]]
    assert text2img[:7] == ["prompt", "negative_prompt", "steps", "guidance_scale", "width", "height", "seed"]
    assert [p["parameter_name"] for p in endpoints["/inpaint"]["parameters"]][:2] == ["image", "mask"]
    assert len(endpoints["/animate"]["returns"]) == 4, "GIF, MP4, first frames, info"


def test_every_tab_has_run_controls_results_and_a_stop_that_cancels_its_run(running_app):
    conf = attack.config(running_app.url)
    ids = {c.get("props", {}).get("elem_id") for c in conf["components"]}
    for name in TASKS:
        for part in ("generate", "stop", "gallery", "notice", "code", "info", "seed", "random-seed"):
            assert f"{name}-{part}" in ids, f"#{name}-{part}"
        assert f"tab-{name}" in ids
    prompt_tasks = [name for name, spec in TASKS.items() if spec.uses_prompt]
    assert all(f"{name}-prompt" in ids for name in prompt_tasks)
    stop_fns = [d for d in conf["dependencies"] if d.get("cancels")]
    assert len(stop_fns) >= len(TASKS), "each tab's Stop cancels its run (compare has one too)"


def test_every_slider_spans_the_range_its_endpoint_accepts(running_app):
    """The page's sliders and the API's checks read one range (the spec's params): a value the page lets a user
    pick is never refused, and the page never stops short of what the API takes."""
    from core.generation import Limits

    limits = Limits()  # the app under test runs with the default (local) limits
    sliders = {
        c["props"].get("elem_id"): c["props"]
        for c in attack.config(running_app.url)["components"]
        if c["type"] == "slider"
    }
    seen = 0
    for name, spec in TASKS.items():
        for p in spec.params:
            if p.kind in ("slider", "steps", "guidance", "size", "count", "preview"):
                props = sliders[p.elem_id or f"{name}-{p.name.replace('_', '-')}"]
                assert (props["minimum"], props["maximum"]) == p.page_range(limits), (name, p.name)
                seen += 1
    assert seen > 3 * len(TASKS)


def test_no_slider_starts_outside_a_public_servers_limits(public_app):
    """A public server's limits are tighter (max_side 1024); a default above them (the panorama's 2048 px) starts
    at the limit instead of at a value the page would refuse."""
    sliders = [c["props"] for c in attack.config(public_app.url)["components"] if c["type"] == "slider"]
    outside = [p.get("elem_id") for p in sliders if not p["minimum"] <= p["value"] <= p["maximum"]]
    assert outside == []
    panorama = next(p for p in sliders if p.get("elem_id") == "panorama-width")
    assert panorama["value"] == panorama["maximum"] == 1024
