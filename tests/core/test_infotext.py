"""The studio's PNGs read by other tools' readers: sd-parsers (PyPI), and a parser written from AUTOMATIC1111's
infotext rules (its `infotext_utils.parse_generation_parameters`), give back what the run used."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from PIL import Image
from sd_parsers import ParserManager

from core import infotext, schedulers
from core.generation import GenerationRequest
from core.png_info import parse_parameters, read_png_info
from core.studio import Studio, StudioOptions

# A1111's own pattern for one `Key: value` of the settings line, quoted values included.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
A1111_SAMPLERS = {
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
    "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS",
    "UniPC", "LCM",
}  # fmt: skip
A1111_SCHEDULES = {"Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "Beta"}


def a1111_parse(text: str) -> dict[str, str]:
    """What A1111 reads from an infotext: the last line is the settings when it holds at least 3 pairs; quoted
    values are JSON strings; `Size` splits in two; a missing `Schedule type` is Automatic and a missing `RNG` GPU."""
    *lines, last = text.strip().split("\n")
    if len(A1111_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[16:].strip()
        (negative if in_negative else prompt).append(line)
    found: dict[str, str] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in A1111_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = json.loads(value)
        size = re.fullmatch(r"(\d+)x(\d+)", value)
        if size:
            found[f"{key}-1"], found[f"{key}-2"] = size[1], size[2]
        else:
            found[key] = value
    found.setdefault("Schedule type", "Automatic")
    found.setdefault("RNG", "GPU")
    return found


def addnet_hash(path) -> str:
    """A1111's LoRA hash, computed here independently: SHA-256 of a safetensors file past its JSON header."""
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header :]).hexdigest()[:12]


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    studio = Studio(StudioOptions(device="cpu", offline=True, outputs_dir=tmp_path_factory.mktemp("outputs")))
    studio.load("demo", variant="default", dtype="float32")
    return studio


RUN = dict(prompt="a red kite", negative_prompt="fog, rain", steps=3, width=64, height=64, guidance_scale=6.5)


def test_every_scheduler_reads_back_the_same_with_sd_parsers_and_a1111s_rules(studio):
    names = studio.scheduler_names()
    assert {c.name for c in schedulers.CATALOG} <= set(names), "the demo (SD 1.5) takes the whole catalog"
    parser = ParserManager()
    for i, name in enumerate(names):
        result = studio.generate(GenerationRequest(**RUN, seed=100 + i, scheduler=name, num_images=2))
        built = schedulers.of_scheduler(studio.pool.base.scheduler) if name == "default" else schedulers.choice(name)
        sampler, schedule = built.a1111
        for index, path in enumerate(result.paths):
            text = Image.open(path).text["parameters"]
            a1111 = a1111_parse(text)
            assert (a1111["Sampler"], a1111["Schedule type"]) == (sampler, schedule), (name, text)
            assert schedule in A1111_SCHEDULES, "never Automatic: A1111 would pick its own schedule"
            assert sampler in A1111_SAMPLERS or name in ("DDPM", "DEIS"), f"{sampler} is a sampler A1111 knows"
            assert a1111["Seed"] == str(100 + i + index), "each image of a batch has its own seed"
            assert (a1111["Steps"], a1111["CFG scale"], a1111["Size-1"], a1111["Size-2"]) == ("3", "6.5", "64", "64")
            assert a1111["Model"] == "demo" and a1111["RNG"] == "CPU"
            assert (a1111["Prompt"], a1111["Negative prompt"]) == ("a red kite", "fog, rain")

            read = parser.parse(path)
            assert read is not None, text
            (used,) = read.samplers
            assert used.name == sampler
            assert used.parameters["scheduler"] == schedule
            assert (used.parameters["seed"], used.parameters["steps"]) == (str(100 + i + index), "3")
            assert used.parameters["cfg_scale"] == "6.5" and used.model.name == "demo"
            assert read.metadata["Size"] == "64x64"

            # A tool that keeps only the text chunk still sends the same scheduler back here.
            again = parse_parameters(text)["fields"]
            assert again["scheduler"] == built.name and again["seed"] == 100 + i + index
    assert result.info["scheduler"] == names[-1]


def test_the_checkpoints_own_scheduler_is_named_not_default(studio):
    result = studio.generate(GenerationRequest(**RUN, seed=3))
    assert type(studio.pool.base.scheduler).__name__ == "PNDMScheduler"
    assert "Sampler: PLMS, Schedule type: Uniform" in Image.open(result.paths[0]).text["parameters"]
    assert (result.info["sampler"], result.info["schedule_type"]) == ("PLMS", "Uniform")


def test_a_lora_run_records_its_tag_and_hash_for_every_reader(studio):
    from core.demo.families import demo_lora_path

    studio.load_lora("demo-lora", weight=0.8)
    try:
        result = studio.generate(GenerationRequest(**RUN, seed=5, scheduler="DPM++ 2M Karras"))
    finally:
        studio.unload_lora("demo_lora")
    (lora_file,) = demo_lora_path(studio.options.cache_dir, "demo-lora").glob("*.safetensors")
    expected = addnet_hash(lora_file)
    assert result.info["loras"] == [
        {"name": "demo-lora", "adapter": "demo_lora", "source": "demo-lora", "weight": 0.8, "hash": expected}
    ]
    text = Image.open(result.paths[0]).text["parameters"]
    a1111 = a1111_parse(text)
    assert a1111["Prompt"] == "a red kite <lora:demo-lora:0.8>"
    assert a1111["Lora hashes"] == f"demo-lora: {expected}"
    assert (a1111["Sampler"], a1111["Schedule type"]) == ("DPM++ 2M", "Karras")

    read = ParserManager().parse(result.paths[0])
    assert "<lora:demo-lora:0.8>" in read.prompts[0].value, "sd-parsers keeps the tag in the prompt"

    found = read_png_info(result.paths[0])
    assert found["loras"] == [{"name": "demo-lora", "weight": 0.8, "hash": expected, "source": "demo-lora"}]
    from_text = parse_parameters(text)
    assert from_text["fields"]["prompt"] == "a red kite", "the tag leaves the prompt"
    assert from_text["loras"] == [{"name": "demo-lora", "weight": 0.8, "hash": expected}]


def test_values_are_quoted_as_a1111_quotes_them_and_paths_become_short_names(tmp_path):
    folder = tmp_path / "sd15, v2: tuned"
    folder.mkdir()
    info = {
        "prompt": "p",
        "steps": 4,
        "sampler": "Euler",
        "schedule_type": "Uniform",
        "guidance_scale": 7.0,
        "seeds": [9],
        "width": 64,
        "height": 96,
        "model": str(folder),
    }
    text = infotext.infotext(info)
    assert str(tmp_path) not in text, "no absolute local path"
    assert a1111_parse(text)["Model"] == "sd15, v2: tuned"
    assert a1111_parse(text)["CFG scale"] == "7"
    assert infotext.model_name("org/some-model") == "org/some-model"
    assert infotext.model_name(str(tmp_path / "v1-5-pruned.safetensors")) == "v1-5-pruned"
    assert parse_parameters(text)["other"]["Model"] == "sd15, v2: tuned"


def test_a_single_file_checkpoint_gets_a1111s_model_hash(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 64)
    assert infotext.model_hash(file) == hashlib.sha256(file.read_bytes()).hexdigest()[:10]
    assert infotext.model_hash(None) is None and infotext.model_hash(tmp_path) is None
