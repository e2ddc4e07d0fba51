"""A user's choices parsed once into typed specs, rendered back by one function, and the
registries that turn specs into stages."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from mattecam import cli, configfile
from mattecam.compositing.backgrounds import BACKGROUNDS, BlurBackground, ColorBackground
from mattecam.config import CHOICES, Settings
from mattecam.errors import ConfigError
from mattecam.matte import REFINERS, make_refiner
from mattecam.sinks import SINKS, FileSink, NullSink, V4L2LoopbackSink, make_sink
from mattecam.sources import SOURCES
from mattecam.specs import BACKGROUND_KINDS, BackgroundSpec, InputSpec, OutputSpec


@pytest.mark.parametrize(
    ("text", "spec", "rendered"),
    [
        ("blur", BackgroundSpec("blur"), "blur"),
        (" Blur ", BackgroundSpec("blur"), "blur"),
        ("none", BackgroundSpec("none"), "none"),
        ("off", BackgroundSpec("none"), "none"),
        ("green", BackgroundSpec("color", color=(0, 255, 0)), "#00ff00"),
        ("#336699", BackgroundSpec("color", color=(0x99, 0x66, 0x33)), "#336699"),
        ("51,102,153", BackgroundSpec("color", color=(153, 102, 51)), "#336699"),
        ("beach.jpg", BackgroundSpec("image", path=Path("beach.jpg")), "beach.jpg"),
        ("loop.webm", BackgroundSpec("video", path=Path("loop.webm")), "loop.webm"),
        ("dir/picture", BackgroundSpec("image", path=Path("dir/picture")), "dir/picture"),
    ],
)
def test_background_text_is_parsed_once_and_rendered_back(
    text: str, spec: BackgroundSpec, rendered: str
) -> None:
    assert BackgroundSpec.parse(text) == spec
    assert str(spec) == rendered
    assert BackgroundSpec.parse(str(spec)) == spec  # the rendering reads back the same


def test_not_a_background() -> None:
    with pytest.raises(ConfigError, match="neither a file nor a colour"):
        BackgroundSpec.parse("notacolour")


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("0", InputSpec("camera", Path("/dev/video0"))),
        ("/dev/video2", InputSpec("camera", Path("/dev/video2"))),
        ("talk.mp4", InputSpec("file", Path("talk.mp4"))),
        ("/dev/video2.mp4", InputSpec("file", Path("/dev/video2.mp4"))),
    ],
)
def test_input_specs(text: str, spec: InputSpec) -> None:
    assert InputSpec.parse(text) == spec
    assert InputSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "spec", "sink"),
    [
        ("null", OutputSpec("null"), NullSink),
        ("null:i420", OutputSpec("null", "i420"), NullSink),
        ("auto", OutputSpec("camera", "auto"), V4L2LoopbackSink),
        ("/dev/video10", OutputSpec("camera", "/dev/video10"), V4L2LoopbackSink),
        ("out.MP4", OutputSpec("file", "out.MP4"), FileSink),
        ("clip.webm", OutputSpec("file", "clip.webm"), FileSink),
    ],
)
def test_output_specs_and_their_sinks(text: str, spec: OutputSpec, sink: type) -> None:
    assert OutputSpec.parse(text) == spec
    assert str(spec) == text
    assert type(make_sink(spec)) is sink
    assert type(make_sink(text)) is sink


def test_unknown_output_names_the_valid_kinds() -> None:
    with pytest.raises(ConfigError, match=r"unknown output.*/dev/videoN.*null.*\.mp4"):
        OutputSpec.parse("out.txt")


def test_every_kind_has_a_factory() -> None:
    """A kind a spec can hold is a kind a registry can build."""
    assert set(BACKGROUNDS) == set(BACKGROUND_KINDS)
    kinds = typing.get_args(typing.get_type_hints(OutputSpec)["kind"])
    assert set(SINKS) == set(kinds)
    assert set(SOURCES) == set(typing.get_args(typing.get_type_hints(InputSpec)["kind"]))
    assert isinstance(BACKGROUNDS["blur"](BackgroundSpec("blur"), 20.0), BlurBackground)
    colour = BACKGROUNDS["color"](BackgroundSpec.parse("red"), 12.0)
    assert isinstance(colour, ColorBackground) and colour.bgr == (0, 0, 255)


def test_settings_hold_specs_whether_given_text_or_specs() -> None:
    a = Settings(input="0", outputs=("null", "/dev/video10"), background="blur")
    b = Settings(
        input=InputSpec.parse("/dev/video0"),
        outputs=(OutputSpec("null"), OutputSpec("camera", "/dev/video10")),
        background=BackgroundSpec("blur"),
    )
    assert a == b
    assert isinstance(a.input, InputSpec) and isinstance(a.background, BackgroundSpec)
    assert all(isinstance(o, OutputSpec) for o in a.outputs)
    assert Settings(outputs=("null",)).background == BackgroundSpec.parse("green")


def test_the_config_file_gives_specs_and_names_the_key(tmp_path: Path) -> None:
    values = configfile.parse('background = "#336699"\noutputs = ["null"]\ninput = "1"\n')
    assert values == {
        "background": BackgroundSpec.of_color((0x99, 0x66, 0x33)),
        "outputs": (OutputSpec("null"),),
        "input": InputSpec("camera", Path("/dev/video1")),
    }
    with pytest.raises(ConfigError, match=r"^c\.toml: background: .*neither a file"):
        configfile.parse('background = "notacolour"\n', where="c.toml")
    with pytest.raises(ConfigError, match=r"^c\.toml: outputs: .*unknown output"):
        configfile.parse('outputs = ["out.txt"]\n', where="c.toml")


def test_the_command_line_is_parsed_once_into_the_settings_it_gives() -> None:
    ns, given = cli.parse_run_args(
        ["-o", "null", "-o", "x.mp4", "--blur", "5", "--no-mirror", "-i", "1", "-vv"]
    )
    assert given == {
        "outputs": ("null", "x.mp4"),
        "blur_strength": 5.0,
        "mirror": False,
        "input": "1",
    }
    assert ns.verbose == 2 and ns.config is None
    assert cli.parse_run_args([])[1] == {}  # nothing given: the file and defaults decide
    # Choices come from the settings' own lists (bgr24 was missing from the flag's).
    assert cli.parse_run_args(["--output-format", "bgr24"])[1] == {"output_format": "bgr24"}


def test_the_model_is_checked_where_it_enters() -> None:
    """A model name is checked when the settings are made, not when the model loads: named
    as the flag on the command line, as the key in the config file."""
    assert Settings(outputs=("null",), model="general").model == "general"
    assert Settings(outputs=("null",), model="my.tflite").model == "my.tflite"  # a path
    with pytest.raises(ConfigError, match=r"^--model must be one of landscape, general"):
        Settings(outputs=("null",), model="huge")
    with pytest.raises(ConfigError, match=r"^c\.toml: model must be one of"):
        configfile.merge({"model": "huge", "outputs": ("null",)}, {}, where="c.toml")


def test_refinements_come_from_their_registry() -> None:
    assert tuple(REFINERS) == CHOICES["refine"] == ("guided", "bilinear")
    with pytest.raises(ConfigError, match="unknown refinement 'magic'; use one of guided"):
        make_refiner("magic")
