"""Typed parameters (`hoi_cli.params`): choices checked when params are built, text read by the
annotations, nested groups, help for every field, and the README's generated reference."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoi_cli.cli import app
from hoi_cli.errors import BadInputError, ExitCode
from hoi_cli.params import (choices_of, field_help, known_keys, nested_class, params_changes, params_from_dict,
                            parse_list, type_hints)
from hoi_cli.params_reference import README_BEGIN, README_END, readme_section
from hoi_cli.pipeline import STAGES, get_stage, parse_overrides
from hoi_cli.segment.grabcut import GrabCutParams
from hoi_cli.stages.base import params_to_dict

ROOT = Path(__file__).resolve().parents[1]


def all_params_classes() -> dict[str, type]:
    """Every stage's Params and every class nested in one (by a dotted label)."""
    out: dict[str, type] = {}

    def walk(label: str, cls: type) -> None:
        out[label] = cls
        for f in dataclasses.fields(cls):
            sub = nested_class(type_hints(cls)[f.name])
            if sub is not None:
                walk(f"{label}.{f.name}", sub)

    for name in STAGES:
        walk(name, get_stage(name).Params)
    return out


# ---------------------------------------------------------------- choices
def test_a_typo_in_a_choice_is_one_line_naming_the_choices_and_exits_3(tmp_path):
    with pytest.raises(BadInputError) as e:
        parse_overrides(["mlo.proxy_anchor=frnt"])
    assert e.value.message == "bad 04_mlo parameter proxy_anchor='frnt'"
    assert e.value.hint == "choose one of: front, rim"
    assert e.value.exit_code == ExitCode.BAD_INPUT
    # through the CLI: the command stops before any clip runs (the clip does not even exist)
    r = CliRunner().invoke(app, ["preprocess", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "runs"),
                                 "--set", "mlo.proxy_anchor=frnt"])
    assert r.exit_code == ExitCode.BAD_INPUT, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == ["error: bad 04_mlo parameter proxy_anchor='frnt'", "hint: choose one of: front, rim"]
    assert not (tmp_path / "runs").exists()  # nothing written, nothing fingerprinted


@pytest.mark.parametrize("where, values, message", [
    ("03_segment", {"backend": "sma"}, "bad 03_segment parameter backend='sma'"),
    ("03_segment", {"grabcut.color_space": "hsv"}, "bad 03_segment parameter grabcut.color_space='hsv'"),
    ("03_segment", {"sam_model_type": "vit_x"}, "bad 03_segment parameter sam_model_type='vit_x'"),
    ("01_detect", {"object_method": "segment"}, "bad 01_detect parameter object_method='segment'"),
    ("01_detect", {"model_complexity": "2"}, "bad 01_detect parameter model_complexity='2'"),
    ("06_layout", {"object_box_from": "masks"}, "bad 06_layout parameter object_box_from='masks'"),
    ("04_mlo", {"backend": "opengl"}, "bad 04_mlo parameter backend='opengl'"),
])
def test_every_choice_field_rejects_a_value_outside_its_choices(where, values, message):
    with pytest.raises(BadInputError) as e:
        params_from_dict(get_stage(where).Params, values)
    assert e.value.message == message and e.value.hint.startswith("choose one of: ")


def test_choices_are_checked_when_code_builds_params_too():
    from hoi_cli.detect.objects import ObjectConfig
    from hoi_cli.stages import mlo, segment

    with pytest.raises(BadInputError, match="proxy_anchor='frnt'"):
        mlo.Params(proxy_anchor="frnt")
    with pytest.raises(BadInputError, match="grabcut.color_space='x'"):
        segment.Params(grabcut={"color_space": "x"})  # a manifest's nested dict
    with pytest.raises(BadInputError, match="method='segment'"):
        ObjectConfig(method="segment")
    assert mlo.Params(proxy_anchor="rim").proxy_anchor == "rim"


def test_every_literal_default_is_one_of_its_choices_and_every_field_has_help():
    n_choices = 0
    for label, cls in all_params_classes().items():
        helps = field_help(cls)
        base = cls()
        for f in dataclasses.fields(cls):
            assert len(helps.get(f.name, "")) >= 12, f"{label}.{f.name} has no help (a docstring under the field)"
            choices = choices_of(type_hints(cls)[f.name])
            if choices is not None:
                n_choices += 1
                assert getattr(base, f.name) in choices, (label, f.name)
    assert n_choices >= 8  # backend x2, sam_model_type, color_space, object_method, model_complexity, anchor, box_from


def test_no_plain_str_field_documents_choices_with_a_bar():
    """A ``str`` field whose help lists alternatives as ``a | b`` is a choice that escaped its Literal."""
    for label, cls in all_params_classes().items():
        for f in dataclasses.fields(cls):
            if type_hints(cls)[f.name] is str:
                assert " | " not in field_help(cls)[f.name], (label, f.name)


# ---------------------------------------------------------------- text by annotation
def test_set_text_is_read_by_the_annotation_not_the_default():
    from hoi_cli.stages import detect, frames, silhouette

    p = params_from_dict(frames.Params, {"end": "50", "upscale": "yes", "fps": "25"})
    assert (p.end, p.upscale, p.fps) == (50, True, 25.0)  # end's default is None: it was kept as text before
    assert params_from_dict(frames.Params, {"end": "none"}).end is None
    assert params_from_dict(silhouette.Params, {"object_color": "255, 0,10"}).object_color == (255, 0, 10)
    d = params_from_dict(detect.Params, {"object_box": "1,2,30,40", "model_complexity": "0",
                                         "hand_boxes": "1,2,3,4@0;5,6,7,8"})
    assert d.object_box == (1.0, 2.0, 30.0, 40.0) and d.model_complexity == 0
    assert d.hand_boxes == "1,2,3,4@0;5,6,7,8"  # the text form, parsed by the stage
    for values, message in (({"upscale": "flase"}, "not a yes/no value"), ({"stride": "2.5"}, "not an integer"),
                            ({"fps": "fast"}, "not a number")):
        with pytest.raises(BadInputError, match=message):
            params_from_dict(frames.Params, values)


def test_one_list_parser():
    assert parse_list("a, b,,c") == ("a", "b", "c")
    assert parse_list(" 1,2.5 ", float) == (1.0, 2.5)
    assert parse_list("") is None and parse_list(None) is None and parse_list([]) is None
    with pytest.raises(BadInputError, match="not a comma-separated list of numbers"):
        parse_list("1,x", float, "object box")
    from hoi_cli.prompts import parse_numbers

    assert parse_numbers("10, 20,30,40", 4) == (10.0, 20.0, 30.0, 40.0)
    with pytest.raises(BadInputError, match="expected 4 numbers"):
        parse_numbers("1,2,3", 4, "object box")


# ---------------------------------------------------------------- nesting, round trip
def test_round_trip_params_dict_params_for_every_stage():
    for name in STAGES:
        cls = get_stage(name).Params
        p = cls()
        d = params_to_dict(p)
        assert params_from_dict(cls, d) == p
        assert cls(**d) == p  # how tests and tools rebuild params from a manifest
        assert json.loads(json.dumps(d)) == d
    from hoi_cli.stages import segment

    custom = params_from_dict(segment.Params, {"grabcut.iterations": "5", "backend": "sam", "vote": 1})
    assert params_from_dict(segment.Params, params_to_dict(custom)) == custom


def test_nested_grabcut_overrides_in_every_form():
    from hoi_cli.pipeline import Recipe, resolve_params
    from hoi_cli.stages import segment

    default = segment.Params().grabcut
    # the pipeline's effective GrabCut settings: two differ from GrabCutParams' own defaults, none else
    diff = {f.name for f in dataclasses.fields(GrabCutParams)
            if getattr(default, f.name) != getattr(GrabCutParams(), f.name)}
    assert diff == {"max_side", "iterations"} and (default.max_side, default.iterations) == (200, 2)
    dotted = params_from_dict(segment.Params, parse_overrides(["segment.grabcut.iterations=3"])["03_segment"])
    bare = params_from_dict(segment.Params, parse_overrides(["segment.iterations=3"])["03_segment"])
    assert dotted == bare and bare.grabcut.iterations == 3 and bare.grabcut.max_side == 200  # others keep 03_segment's
    recipe = Recipe("t", ["03_segment"], {"03_segment": {"grabcut": {"vote": 1}, "max_side": 150}})
    r = resolve_params("03_segment", recipe, {"03_segment": {"grabcut.iterations": "4"}})
    assert (r.grabcut.vote, r.grabcut.max_side, r.grabcut.iterations) == (1, 150, 4)
    old = params_from_dict(segment.Params, {"propagate": False})  # the name before the move (manifests, scripts)
    assert old.grabcut.use_prior is False and old.grabcut.reuse_models is False
    with pytest.raises(BadInputError, match="unknown parameter.*grabcut.nope") as e:
        params_from_dict(segment.Params, {"grabcut.nope": 1})
    assert "grabcut.iterations" in e.value.hint
    assert "grabcut.max_side" in known_keys(segment.Params)


def test_detect_configs_are_built_from_the_shared_fields():
    from hoi_cli.detect.hands import HandDetectorConfig
    from hoi_cli.stages import detect

    p = detect.Params(min_presence=0.7, max_gap=5, tiles=True, model_complexity=0)
    cfg = detect.hand_config(p)
    assert (cfg.min_presence, cfg.max_gap, cfg.model_complexity) == (0.7, 5, 0)
    assert cfg.full_frame_passes[-1] == "tiles" and cfg.rescore
    shared = ({f.name for f in dataclasses.fields(HandDetectorConfig)}
              & {f.name for f in dataclasses.fields(detect.Params)})
    assert shared == {"square_size", "min_detection_confidence", "min_presence", "redetect", "palm_seed",
                      "left_hand_on_image_left", "max_gap", "model_complexity"}
    assert detect.hand_config(detect.Params()) == dataclasses.replace(HandDetectorConfig())


def test_a_run_recorded_before_the_move_reads_as_moved_in_one_short_reason():
    from hoi_cli.stages import segment

    new = params_to_dict(segment.Params())
    moved = {k: v for k, v in new["grabcut"].items() if k in (
        "max_side", "iterations", "margin", "vote", "hand_erode_px", "max_box_change", "box_soft_frac", "hand_soft_px",
        "seed_sure_frac", "grow_frac", "grow_touch", "grow_need_seed", "grow_rounds", "collapse_frac", "collapse_fill")}
    old = {**{k: v for k, v in new.items() if k != "grabcut"}, **moved, "propagate": True}
    changes = params_changes(old, new)
    assert changes[0] == "15 moved into grabcut"
    assert changes[1:] == ["grabcut.color_space: None -> 'rgb'", "grabcut.keep_frac: None -> 0.2",
                           "grabcut.min_margin_px: None -> 8", "grabcut.reuse_models: None -> True",
                           "grabcut.use_prior: None -> True", "propagate: True -> None"]
    assert params_changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ["b: 2 -> 3"]  # flat params: as before


# ---------------------------------------------------------------- --list-params and the README
def test_list_params_text_and_json():
    r = CliRunner().invoke(app, ["preprocess", "--list-params", "segment"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("03_segment") and "grabcut.iterations = 2" in r.output
    assert "one of: grabcut, sam, sam2" in r.output
    r = CliRunner().invoke(app, ["preprocess", "--list-params", "--format", "json"])
    doc = json.loads(r.output)
    assert list(doc) == list(STAGES)
    anchor = next(row for row in doc["04_mlo"] if row["name"] == "proxy_anchor")
    assert anchor["choices"] == ["front", "rim"] and anchor["default"] == "front" and anchor["help"]
    r = CliRunner().invoke(app, ["preprocess", "--list-params", "nope"])
    assert r.exit_code == ExitCode.BAD_INPUT and "unknown stage 'nope'" in r.output


def test_the_readme_parameter_section_is_generated_from_the_code():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    assert text[start:end] == readme_section(), "run `python -m hoi_cli.params_reference --readme README.md`"


def test_literal_annotations_are_resolvable_in_every_params_module():
    for label, cls in all_params_classes().items():
        hints = type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.name in hints, (label, f.name)
            if typing.get_origin(hints[f.name]) is typing.Literal:
                assert all(isinstance(c, (str, int)) for c in typing.get_args(hints[f.name]))
