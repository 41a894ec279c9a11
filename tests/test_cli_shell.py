"""The CLI shell: every flag the README, `hoi env` and the code's own hints name exists, and every
command shares one --format, one error JSON, one batch exit rule and one device default.

The README's command lines are parsed by the real commands (`make_context`: options, types,
choices and required arguments, without running anything), so a renamed or removed flag fails
here instead of in a user's terminal.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hoi_cli import pipeline as pl
from hoi_cli.cli import app
from hoi_cli.commands.common import batch_exit_code, batch_summary
from hoi_cli.errors import BadInputError, ExitCode

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ROOT = typer.main.get_command(app)
# flags of other programs that hints quote (torchrun, huggingface-cli, pip) and of the module scripts
# with their own argparse (`python -m hoi_cli.stagecode --write`, `python -m hoi_cli.handmodel.build`)
FOREIGN_FLAGS = {"--nproc", "--nproc-per-node", "--nproc_per_node", "--local-dir", "--no-build-isolation", "--write",
                 "--lock", "--spacing", "--readme"}  # other programs' flags (torchrun, pip, hf, stagecode, params_reference)
MENTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([\w.:=+/-]+))?")


def _commands(cmd=ROOT, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every leaf command by its words, e.g. ("weights", "get")."""
    if not hasattr(cmd, "commands"):
        return {path: cmd}
    found = {}
    for name, sub in cmd.commands.items():
        found.update(_commands(sub, path + (name,)))
    return found


COMMANDS = _commands()


def _options(cmd) -> dict[str, object]:
    return {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


ALL_FLAGS: dict[str, list] = {flag: [param] for flag, param in _options(ROOT).items()}  # --version
ALL_FLAGS["--help"] = []
for _cmd in COMMANDS.values():
    for _flag, _param in _options(_cmd).items():
        ALL_FLAGS.setdefault(_flag, []).append(_param)


def _choices(param) -> list[str]:
    """The values a choice option takes (typer's own parameter types, or Click's), else []."""
    kind = getattr(param, "type_descriptor", None) or getattr(param, "type", None)
    return [str(getattr(c, "value", c)) for c in (getattr(kind, "choices", None) or ())]


def _leaf(words: list[str]):
    """(command, the words after its name) for ``words`` as typed after `hoi`."""
    for n in (2, 1):
        if tuple(words[:n]) in COMMANDS:
            return COMMANDS[tuple(words[:n])], words[n:]
    raise AssertionError(f"no command `hoi {' '.join(words[:2])}`")


def parse(words: list[str]):
    """Parse `hoi WORDS...` with the real command (options, types, choices, required ones); run nothing."""
    cmd, rest = _leaf(words)
    ctx = cmd.make_context("hoi " + " ".join(words[:len(words) - len(rest)]), list(rest))
    for stage, values in pl.parse_overrides(ctx.params.get("set_params") or []).items():
        pl.resolve_params(stage, pl.Recipe("check", []), {stage: values})  # STAGE.PARAM exists, VALUE is valid
    return ctx


def readme_command_lines() -> list[list[str]]:
    """The words after `hoi` of every command in the README's code blocks (continuations joined)."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", README.read_text(), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:  # a diagram or prose in a block, not a shell line
                continue
            segment: list[str] = []
            for tok in tokens + [";"]:
                if tok in ("&&", "||", "|", ";"):
                    if segment[:1] == ["hoi"]:
                        lines.append(segment[1:])
                    segment = []
                elif segment and segment[-1].startswith(">") and segment[-1] in (">", "2>", ">>"):
                    segment.pop()  # a redirection and its file
                else:
                    segment.append(tok)
    return lines


def check_mention(flag: str, value: str | None, where: str) -> None:
    """A flag quoted in prose or a hint: some command has it; a value given to a choice is one of its choices."""
    if flag in FOREIGN_FLAGS:
        return
    assert flag in ALL_FLAGS, f"{where}: no command has {flag}"
    if not value or value.isupper() or "..." in value:  # a placeholder (PATH, CKPT, ...)
        return
    if flag == "--set":
        m = re.fullmatch(r"(\w+)\.([\w.]+)=(.*)", value)
        assert m, f"{where}: --set {value} is not STAGE.PARAM=VALUE"
        stage = pl.stage_name(m.group(1))
        if m.group(3) and not m.group(3).isupper() and "..." not in m.group(3) and "/" not in m.group(3):
            pl.resolve_params(stage, pl.Recipe("check", []), pl.parse_overrides([value]))
        else:  # a placeholder value: the name must still exist (dotted names: a nested Params field)
            params = pl.get_stage(stage).Params()
            for name in m.group(2).split("."):
                assert hasattr(params, name), f"{where}: --set {value}: {stage} has no parameter {m.group(2)}"
                params = getattr(params, name)
        return
    if flag == "--pipeline" and re.fullmatch(r"[a-z]+", value):
        assert value in pl.list_recipes(), f"{where}: --pipeline {value} is no recipe"
        return
    choices = [_choices(p) for p in ALL_FLAGS[flag]]
    if choices and all(choices) and value[0].isalpha() and value.islower():
        valid = {c for cs in choices for c in cs}
        assert value in valid, f"{where}: {flag} {value}: the choices are {sorted(valid)}"


# ---------------------------------------------------------------- the README
def test_readme_command_lines_parse():
    lines = readme_command_lines()
    assert len(lines) >= 20, lines  # the quick start, batches, generate, train, eval, weights, SAM 2
    assert {w[0] for w in lines} >= {"demo", "preprocess", "generate", "train", "eval", "weights"}
    for words in lines:
        try:
            parse(words)
        except Exception as exc:  # noqa: BLE001  (Click's usage errors and ours alike)
            pytest.fail(f"README line `hoi {' '.join(words)}` does not parse: {type(exc).__name__}: {exc}")


def test_the_parser_check_can_fail():
    """What the README test relies on: an unknown flag, a bad choice, a bad --set are errors."""
    for words in (["preprocess", "clip.mp4", "--out", "runs", "--backend", "sam"],  # the old README spelling
                  ["generate", "runs/c", "--backend", "sam"],
                  ["eval", "--format", "table"],
                  ["preprocess", "clip.mp4", "--out", "runs", "--set", "segment.no_such_param=1"]):
        with pytest.raises(Exception) as info:
            parse(words)
        assert type(info.value).__name__ in ("NoSuchOption", "BadParameter", "BadInputError"), info.value
    with pytest.raises(AssertionError):
        check_mention("--backend", "sam", "test")
    with pytest.raises(AssertionError):
        check_mention("--mano-dirs", None, "test")


def test_readme_inline_commands_name_real_flags():
    body = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)
    spans = re.findall(r"`hoi ([^`]*)`", body)
    assert len(spans) >= 20
    for span in spans:
        words = [w.strip("[]") for w in span.split()]
        cmd, rest = _leaf([w for w in words if w])
        flags = _options(cmd)
        for w in rest:
            flag = w.split("=")[0]
            if flag.startswith("--"):
                assert flag in flags, f"README `hoi {span}`: {flag} is not an option of that command"
    # drop other programs' lines (`pip wheel --no-deps .`, `bench/measure_x.py --splits ...`)
    prose = re.sub(r"`([^`]*)`", lambda m: m.group(0) if m.group(1).startswith(("hoi ", "--")) else "", body)
    for m in MENTION.finditer(prose):
        if re.search(re.escape(m.group(0)) + r"`?:? ?`?error:", body):  # the README's example of a typo and its error
            with pytest.raises(BadInputError):
                check_mention(m.group(1), m.group(2), f"README: {m.group(0)}")
            continue
        check_mention(m.group(1), m.group(2), f"README: {m.group(0)}")


def test_hoi_env_names_real_flags(monkeypatch, tmp_path):
    import hoi_cli.envinfo as envinfo

    monkeypatch.setattr(envinfo, "offscreen_rendering", lambda timeout=60.0: {"available": False, "platform": "egl"})
    monkeypatch.setenv("HOI_WEIGHTS_DIR", str(tmp_path))
    text = ""
    for fmt in ("text", "json"):
        r = CliRunner().invoke(app, ["env", "--format", fmt])
        assert r.exit_code == 0, r.output
        text += r.stdout
    mentions = MENTION.findall(text)
    assert ("--mano-dir", "") in mentions or any(f == "--mano-dir" for f, _ in mentions)
    assert any(f == "--set" and v.startswith("segment.backend=") for f, v in mentions)
    for flag, value in mentions:
        check_mention(flag, value, f"`hoi env`: {flag} {value}")


def test_hints_in_the_code_name_real_flags():
    """Every `--flag` quoted in a string of hoi_cli (error hints, help, docstrings) exists."""
    n = 0
    for path in sorted((REPO / "hoi_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for m in MENTION.finditer(node.value):
                    n += 1
                    check_mention(m.group(1), m.group(2), f"{path.relative_to(REPO)}:{node.lineno}: {m.group(0)}")
    assert n > 100


# ---------------------------------------------------------------- one shell
def test_every_command_has_the_one_format_option():
    from hoi_cli.commands.common import Format

    for words, cmd in COMMANDS.items():
        fmt = _options(cmd).get("--format")
        assert fmt is not None, f"hoi {' '.join(words)} has no --format"
        assert _choices(fmt) == ["text", "json"], words
        assert fmt.default in (Format.text, "text"), words


def test_flags_render_as_flags_and_help_lists_recipes():
    help_text = CliRunner().invoke(app, ["preprocess", "--help"], terminal_width=200).stdout
    assert "<bool>" not in help_text
    assert re.search(r"-k, --keep-going\s+Go on", help_text)
    for name in pl.list_recipes():
        assert name in help_text
    assert "[default: 12, the rate" in help_text  # not swallowed as markup
    for words in (["train"], ["status"], ["demo"]):
        assert "rehold" in CliRunner().invoke(app, [*words, "--help"], terminal_width=200).stdout


def test_a_value_after_a_flag_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(app, ["preprocess", str(tmp_path / "clip.mp4"), "--keep-going", "true", "--out",
                                 str(tmp_path / "runs"), "--format", "json"])
    assert r.exit_code == ExitCode.USAGE
    assert "take no value" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == ExitCode.USAGE and doc["kind"] == "BadInputError"


@pytest.mark.parametrize("args", [
    ["status", "/nonexistent/run"],
    ["eval", "-g", "/nonexistent/a.mp4", "-r", "/nonexistent/b.mp4"],
    ["generate", "/nonexistent/run", "--reference-from-frame", "0", "--out", "/tmp/x.mp4"],
    ["show", "/nonexistent/run"],
    ["weights", "get", "no_such_file"],
    ["mano", "convert", "/nonexistent"],
])
def test_one_error_json_shape(args):
    r = CliRunner().invoke(app, [*args, "--format", "json"])
    assert r.exit_code == ExitCode.BAD_INPUT, r.output
    doc = json.loads(r.stdout)
    assert set(doc) >= {"ok", "error", "hint", "exit_code", "kind"} and doc["ok"] is False, doc
    assert doc["exit_code"] == ExitCode.BAD_INPUT
    assert r.stderr.startswith("error: ")


def test_show_text_and_json(tmp_path):
    import numpy as np

    from hoi_cli.video import write_video

    frames = np.zeros((3, 24, 32, 3), np.uint8)
    frames[:, 8:16, 10:20] = (200, 30, 30)
    write_video(tmp_path / "square.mp4", frames, 10)
    r = CliRunner().invoke(app, ["preprocess", str(tmp_path / "square.mp4"), "--out", str(tmp_path / "runs"),
                                 "--until", "frames", "-q"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "square"
    text = CliRunner().invoke(app, ["show", str(run), "--no-video", "-n", "2"])
    assert text.exit_code == 0, text.output
    assert re.search(r"sheet: .*show\.png", text.stdout) and "panels: 00_frames" in text.stdout
    js = CliRunner().invoke(app, ["show", str(run), "--no-video", "-n", "2", "--format", "json"])
    doc = json.loads(js.stdout)
    assert doc["stages"] == ["00_frames"] and doc["frames"] == [0, 2] and Path(doc["sheet"]).exists()


def test_batch_summary_and_exit_rule():
    ok = {"ok": True}
    bad3 = {"ok": False, "exit_code": 3}
    bad4 = {"ok": False, "exit_code": 4}
    stop = {"ok": False, "exit_code": 130}
    assert batch_exit_code([ok, ok]) == 0
    assert batch_exit_code([ok, bad3, bad3]) == 3  # one kind of failure: its code
    assert batch_exit_code([bad3, bad4]) == 1  # mixed: 1
    assert batch_exit_code([bad3, stop]) == 130  # interrupted wins
    assert batch_summary([ok, bad3], 4) == {"ok": False, "n_ok": 1, "n_failed": 1, "n_not_run": 2}
    assert batch_summary([ok], 1)["ok"] is True


def test_one_device_resolver(monkeypatch):
    import torch

    from hoi_cli import device as dev
    from hoi_cli.stages import base

    assert base.resolve_device is dev.resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device() == dev.resolve_device("auto") == dev.resolve_device(None) == "cpu"
    assert dev.check_device("auto") == "auto" and dev.check_device("cpu") == "cpu"
    with pytest.raises(BadInputError) as info:
        dev.check_device("cuda:1")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    with pytest.raises(BadInputError) as info:
        dev.check_device("gpu")
    assert info.value.exit_code == ExitCode.USAGE
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dev.resolve_device("auto") == "cuda"
    # one process of a torchrun job on a 4-GPU node: its own GPU, unless a GPU was named
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert dev.resolve_device("auto") == dev.resolve_device("cuda") == "cuda:2"
    assert dev.resolve_device("cuda:0") == "cuda:0" and dev.resolve_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "5")  # more processes than GPUs: shared round-robin
    assert dev.resolve_device("auto") == "cuda:1"
    defaults = {words: _options(cmd)["--device"].default for words, cmd in COMMANDS.items()
                if "--device" in _options(cmd)}
    assert set(defaults) >= {("preprocess",), ("generate",), ("train",), ("eval",)}
    assert set(defaults.values()) == {dev.DEFAULT_DEVICE}, defaults


def test_train_finds_recipes_through_the_pipeline_lookup(tmp_path, monkeypatch):
    from hoi_cli.commands.train import resolve_pipeline

    (tmp_path / "mine.toml").write_text('name = "mine"\nstages = ["00_frames"]\n[model]\nsystem = "cointeract"\n'
                                        "memory_size = 8\n")
    monkeypatch.setenv("HOI_PIPELINES_DIR", str(tmp_path))
    assert resolve_pipeline("mine") == ("cointeract", {"memory_size": 8})  # found in HOI_PIPELINES_DIR
    assert "mine" in pl.list_recipes()
    assert resolve_pipeline("rehold") == ("rehold", {})  # a system name still names its system
    with pytest.raises(BadInputError):
        resolve_pipeline("nope")
