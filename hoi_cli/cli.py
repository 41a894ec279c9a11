"""The `hoi` command: thin Typer commands over importable functions.

Data goes to stdout (tables, or JSON with ``--format json``); logs and progress go to stderr.
Known errors print one line and a hint and exit with the codes in `hoi_cli.errors.ExitCode`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import __version__
from .commands.common import (DEFAULT_DEVICE, DeviceOption, Format, FormatOption, QuietOption, WeightsDirOption,
                              sigterm_as_interrupt,
                              batch_exit_code, batch_summary, err, fail, out, recipe_help)
from .errors import BadInputError, ExitCode, HoiError, known_error, print_error

# rich_markup_mode=None: plain Click help, where a flag shows as a flag (not `<bool>`) and a
# "[default: ...]" written in a help text is printed, not swallowed as rich markup
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Hand-object-interaction video: preprocess clips into conditioning, generate, train, evaluate.")
__all__ = ["Format", "app", "err", "fail", "out", "run"]  # Format, fail: re-exported for older imports

FLAG_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _version_callback(value: bool) -> None:
    if value:
        print(f"hoi {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """hoi: hand-object-interaction video toolkit."""


# ---------------------------------------------------------------- preprocess
@app.command()
def preprocess(
    clips: Annotated[list[str] | None, typer.Argument(
        metavar="CLIP", help="Clips: videos (mp4, webm, mov, ...), GIFs, folders of image frames (PNG/JPEG, sorted by name), or "
             "folders of these.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder of run folders (one per clip).")] = None,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help=recipe_help("Recipe"))] = "full",
    force: Annotated[list[str], typer.Option("--force", help="Rerun this stage (repeatable).")] = [],  # noqa: B006
    from_stage: Annotated[str | None, typer.Option("--from", help="Rerun this stage and all after it.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    set_params: Annotated[list[str], typer.Option(  # noqa: B006
        "--set", help="STAGE.PARAM=VALUE override (repeatable).")] = [],
    max_side: Annotated[int | None, typer.Option(
        help="00_frames: longest side of the working resolution.")] = None,
    start: Annotated[int | None, typer.Option(help="00_frames: first source frame.")] = None,
    end: Annotated[int | None, typer.Option(help="00_frames: stop before this source frame.")] = None,
    stride: Annotated[int | None, typer.Option(help="00_frames: keep every Nth frame.")] = None,
    allow_short: Annotated[bool, typer.Option(
        "--allow-short",
        help="00_frames: accept a damaged clip that decodes fewer frames than it announces (recorded).")] = False,
    fps: Annotated[float | None, typer.Option(
        help="00_frames: frame rate of a frame folder [default: 12, the rate of Something-Something/"
             "Something-Else frames]; videos and GIFs keep theirs.")] = None,
    object_box: Annotated[str | None, typer.Option(
        help="01_detect: object prompt box x0,y0,x1,y1[@FRAME], in source-video pixels (what a player "
             "shows).")] = None,
    object_point: Annotated[str | None, typer.Option(
        help="01_detect: object prompt point x,y[@FRAME], source-video pixels.")] = None,
    object_frame: Annotated[int | None, typer.Option(
        help="01_detect: source frame number (from 0) of the object prompt [default: the first processed "
             "frame].")] = None,
    hand_box: Annotated[list[str], typer.Option(  # noqa: B006
        help="01_detect: hand prompt box x0,y0,x1,y1[@FRAME], source-video pixels; repeatable, at most two (one "
             "per hand).")] = [],
    hand_frame: Annotated[int | None, typer.Option(
        help="01_detect: source frame of --hand-box boxes without @FRAME [default: the first processed "
             "frame].")] = None,
    prompts: Annotated[Path | None, typer.Option(
        help="CSV of per-clip prompts, header clip,object_box,object_point,object_frame,hand_boxes,hand_frame (only "
             "clip required; hand_boxes: up to two boxes separated by ';'); clips not in it get none.")] = None,
    strict: Annotated[bool, typer.Option(help="Make a warning (e.g. no hand found) an error: exit 3.")] = False,
    square_size: Annotated[int | None, typer.Option(help="01_detect: Re-HOLD square hand box size, px.")] = None,
    sam2_checkpoint: Annotated[Path | None, typer.Option(
        help="03_segment: a SAM 2 checkpoint (sam2.1_hiera_*.pt); selects the sam2 backend "
             "(--set segment.backend=sam2).")] = None,
    focal: Annotated[float | None, typer.Option(
        help="02_hands: focal length in px (default 1.0*max(W,H)).")] = None,
    mano_dir: Annotated[Path | None, typer.Option(
        help="02_hands: folder of the official MANO_RIGHT/LEFT .pkl or .npz [default: $HOI_MANO_DIR, else the "
             "built-in hand].")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run folder name (one clip only).")] = None,
    shard_index: Annotated[int | None, typer.Option(
        help="This shard's index (default: SLURM/torchrun env).")] = None,
    num_shards: Annotated[int | None, typer.Option(help="Number of shards (default: SLURM/torchrun env).")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", "-k",
                                             help="Go on with other clips after a failure.")] = False,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = DEFAULT_DEVICE,
    fmt: FormatOption = Format.text,
    quiet: QuietOption = False,
    list_params: Annotated[bool, typer.Option(
        "--list-params", help="Print the parameters of every stage, or of the stages given in place of clips (hoi "
                              "preprocess --list-params segment): name, default, choices, help (for --set "
                              "STAGE.NAME=VALUE); then exit.")] = False,
) -> None:
    """Turn raw clips into cached, numbered stage folders (runs/<clip-id>/NN_stage).

    Prompts are in source-video pixels and source frame numbers. A clip where no hand is found
    still goes through every stage (hand outputs marked invalid) with a warning; --strict makes
    that an error (exit 3).
    """
    from . import pipeline as pl
    from .device import check_device
    from .prompts import detect_prompt_params, prompts_for_clips

    if list_params:
        from .params_reference import describe_stages, format_text

        try:
            described = describe_stages(clips)
        except HoiError as exc:
            fail(exc, fmt)
        print(json.dumps(described, indent=1) if fmt == Format.json else format_text(described), end="")
        return
    if not clips:
        raise typer.BadParameter("missing: give at least one clip (or --list-params [STAGE])", param_hint="CLIPS...")
    if out_dir is None:
        raise typer.BadParameter("missing: the folder of run folders", param_hint="'--out' / '-o'")
    try:
        recipe = pl.load_recipe(pipeline)
        overrides = pl.parse_overrides(set_params)
        named = {("00_frames", "max_side"): max_side, ("00_frames", "start"): start, ("00_frames", "end"): end,
                 ("00_frames", "stride"): stride, ("00_frames", "fps"): fps,
                 ("00_frames", "allow_short"): allow_short or None,
                 ("01_detect", "square_size"): square_size, ("02_hands", "focal"): focal,
                 ("02_hands", "mano_dir"): str(mano_dir) if mano_dir is not None else None}
        for (stage, key), value in named.items():
            if value is not None:
                overrides.setdefault(stage, {})[key] = value
        if sam2_checkpoint is not None:
            segment_overrides = overrides.setdefault("03_segment", {})
            segment_overrides["sam2_checkpoint"] = str(sam2_checkpoint)
            segment_overrides.setdefault("backend", "sam2")
        prompt_flags = detect_prompt_params(object_box=object_box, object_point=object_point,
                                            object_frame=object_frame, hand_boxes=hand_box, hand_frame=hand_frame)
        if prompts is not None and (prompt_flags or hand_frame is not None):
            raise BadInputError("--prompts cannot be combined with --object-box/--object-point/--object-frame/"
                                "--hand-box/--hand-frame", "put every clip's prompts in the CSV")
        overrides.setdefault("01_detect", {}).update(prompt_flags)
        _reject_flag_values(clips)
        files = pl.expand_clips(clips)
        ids = [run_id] if run_id and len(files) == 1 else pl.run_ids(files)
        if run_id and len(files) > 1:
            raise HoiError("--run-id takes one clip", "drop --run-id to name runs after the clips")
        per_clip = prompts_for_clips(prompts, files, ids) if prompts is not None else {}
        env_index, env_count = pl.shard_from_env()
        index = shard_index if shard_index is not None else env_index
        count = num_shards if num_shards is not None else env_count
        jobs = pl.shard(list(zip(files, ids)), index, count)
        dev = check_device(device)
    except HoiError as exc:
        fail(exc, fmt)

    from .store import clear_clip_failure, clip_failure

    results = []
    progress = _make_progress(quiet)
    with progress:
        clip_task = progress.add_task("clips", total=len(jobs))
        for clip, rid in jobs:
            frame_task = progress.add_task(f"{rid}", total=None)
            t0 = time.time()

            def on_stage_start(name, reason, _rid=rid, _task=frame_task):
                progress.update(_task, description=f"{_rid} {name}", completed=0, total=None)
                if not quiet:
                    err.print(f"[dim]{_rid}: {name} ({reason})[/]", highlight=False)

            def on_progress(done, total, _task=frame_task):
                progress.update(_task, completed=done, total=total)

            record = {"clip": str(clip), "run": str(out_dir / rid), "ok": True, "warnings": []}
            clip_overrides = _with_clip_prompts(overrides, per_clip.get(rid)) if prompts is not None else overrides
            existed = (out_dir / rid).exists()
            interrupted = False
            try:
                with contextlib.redirect_stdout(sys.stderr), sigterm_as_interrupt():
                    # libraries that print (smplx) must not corrupt stdout
                    outcomes = pl.preprocess_clip(
                        clip, out_dir / rid, recipe, overrides=clip_overrides, force=set(force),
                        from_stage=from_stage, until=until, weights_dir=weights_dir, device=dev, strict=strict,
                        on_stage_start=on_stage_start, progress=on_progress,
                        log=lambda m: err.print(m, highlight=False))
                record["stages"] = {o.stage: {"action": o.action, "seconds": o.seconds, "summary": o.summary}
                                    for o in outcomes}
                record["warnings"] = [f"{o.stage}: {w}" for o in outcomes for w in o.warnings]
                clear_clip_failure(out_dir / rid)
            except (Exception, KeyboardInterrupt) as exc:  # every failure is this clip's; the batch goes on
                interrupted = isinstance(exc, KeyboardInterrupt)
                failure, failure_record = clip_failure(exc, out_dir / rid, existed=existed)
                record.update(ok=False, **failure_record)
                print_error(failure, prefix=f"{rid}: ")
            record["seconds"] = round(time.time() - t0, 3)
            results.append(record)
            progress.remove_task(frame_task)
            progress.advance(clip_task)
            if interrupted or (not record["ok"] and not keep_going):
                break
    summary = {**batch_summary(results, len(jobs)), "pipeline": recipe.name, "out": str(out_dir),
               "shard": [index, count], "clips": results,
               "n_with_warnings": sum(bool(r.get("warnings")) for r in results)}
    summary["n_skipped"] = summary["n_not_run"]  # the name before n_not_run (scripts read it)
    if fmt == Format.json:
        print(json.dumps(summary, indent=1))
    elif len(jobs) > 1 or not summary["n_failed"]:  # one failed clip: its error and hint say it all
        _print_preprocess_table(results)
    code = batch_exit_code(results)
    if code:
        raise typer.Exit(code)


def _reject_flag_values(clips: list[str]) -> None:
    """A clip spelt like a boolean that is no file is a value given to a flag (``--keep-going true``): exit 2."""
    for clip in clips:
        if clip.lower() in FLAG_WORDS and not Path(clip).exists():
            raise BadInputError(f"no clip {clip!r}: flags such as --keep-going, --strict, --allow-short take no value",
                                f"drop {clip!r} (write --keep-going, not --keep-going {clip})",
                                exit_code=ExitCode.USAGE)


def _with_clip_prompts(overrides: dict, clip_prompts: dict | None) -> dict:
    """``overrides`` with 01_detect's prompts replaced by one clip's row of the prompts CSV (or none)."""
    detect = {k: v for k, v in overrides.get("01_detect", {}).items()
              if k not in ("object_box", "object_point", "object_frame", "hand_boxes")}
    detect.update(clip_prompts or {})
    return {**overrides, "01_detect": detect}


def _make_progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, disable=quiet or not err.is_terminal, transient=True)


def _print_preprocess_table(results: list[dict]) -> None:
    table = Table(title="hoi preprocess")
    table.add_column("clip")
    table.add_column("run")
    table.add_column("result")
    table.add_column("stages")
    table.add_column("s", justify="right")
    for r in results:
        stages = ", ".join(f"{k[:2]}:{v['action']}" for k, v in r.get("stages", {}).items())
        result = "[green]ok[/]" if r["ok"] else f"[red]failed[/] {r.get('error', '')}"
        if r["ok"] and r.get("warnings"):
            result = f"[yellow]ok, {len(r['warnings'])} warning{'s' if len(r['warnings']) > 1 else ''}[/]"
        table.add_row(Path(r["clip"]).name, r["run"], result, stages, f"{r['seconds']:.1f}")
    out.print(table)
    for r in results:
        for warning in r.get("warnings", []):
            out.print(f"warning: {Path(r['run']).name} {warning}", highlight=False)


# ---------------------------------------------------------------- status
STATUS_STYLE = {"ok": "green", "stale": "yellow", "missing": "dim", "failed": "red"}


@app.command()
def status(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders, or folders of runs.")],
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", "-p", help=recipe_help("Judge against this recipe's stages and parameters"))] = None,
    verify: Annotated[bool, typer.Option(help="Also re-hash outputs to catch files changed on disk.")] = False,
    weights_dir: WeightsDirOption = None,
    fmt: FormatOption = Format.text,
) -> None:
    """A run x stage table: ok, stale (with the reason), missing or failed; ! marks a stage with warnings."""
    from . import pipeline as pl
    from .store import find_runs

    try:
        recipe = pl.load_recipe(pipeline) if pipeline else None
        for path in runs:
            if not path.exists():
                raise BadInputError(f"not found: {path}", "pass run folders, or the --out folder of `hoi preprocess`")
        found = find_runs(runs)
        if not found:
            raise BadInputError(f"no run folders in {', '.join(map(str, runs))}",
                                "pass the --out folder of `hoi preprocess`")
        table_data = {str(r): pl.run_status(r, recipe, verify=verify, weights_dir=weights_dir) for r in found}
    except HoiError as exc:
        fail(exc, fmt)
    if fmt == Format.json:
        print(json.dumps({"runs": table_data}, indent=1))
        return
    stages = [s for s in pl.STAGES if any(s in v for v in table_data.values())]
    table = Table(title="hoi status")
    table.add_column("run")
    for s in stages:
        table.add_column(s)
    reasons = []
    for run, states in table_data.items():
        cells = []
        for s in stages:
            st = states.get(s)
            if st is None:
                cells.append("")
                continue
            flag = "[yellow]![/]" if st.get("warnings") else ""
            cells.append(f"[{STATUS_STYLE[st['status']]}]{st['status']}[/]{flag}")
            if st["reason"] and st["status"] != "ok":
                reasons.append(f"{Path(run).name} {s}: {st['status']}: {st['reason']}")
            reasons += [f"{Path(run).name} {s}: warning: {w}" for w in st.get("warnings", [])]
        table.add_row(Path(run).name, *cells)
    out.print(table)
    for line in reasons:
        out.print(line, highlight=False)


# ---------------------------------------------------------------- env
@app.command()
def env(
    weights_dir: WeightsDirOption = None,
    fmt: FormatOption = Format.text,
) -> None:
    """Versions, offscreen-rendering availability, devices and resolved weight paths."""
    from .envinfo import collect_env

    info = collect_env(weights_dir)
    if fmt == Format.json:
        print(json.dumps(info, indent=1))
        return
    table = Table(title="hoi env", show_header=False)
    table.add_column("what")
    table.add_column("value")
    weights = info.pop("weights")
    for key, value in info.items():
        if isinstance(value, dict):
            for k, v in value.items():
                table.add_row(f"{key}.{k}", json.dumps(v) if isinstance(v, (dict, list)) else str(v))
        else:
            table.add_row(key, str(value))
    table.add_row("weights.search_path", ", ".join(weights["search_path"]))
    for key, entry in weights["files"].items():
        found = entry["path"] or f"[dim]missing ({entry['expected']})[/]"
        table.add_row(f"weights.{key}", f"{found}  [dim]{entry['what']}[/]")
    out.print(table)


# ---------------------------------------------------------------- sub-apps registered by feature modules
def _register_optional() -> None:
    """Commands that live in their feature's module; each module imports its heavy libraries lazily."""
    import importlib

    for module, attr, name, kind in [
        ("hoi_cli.commands.demo", "demo_command", "demo", "command"),
        ("hoi_cli.commands.show", "show_command", "show", "command"),
        ("hoi_cli.commands.generate", "generate_command", "generate", "command"),
        ("hoi_cli.commands.train", "train_command", "train", "command"),
        ("hoi_cli.commands.eval", "eval_command", "eval", "command"),
        ("hoi_cli.commands.mano", "app", "mano", "group"),
        ("hoi_cli.commands.weights", "app", "weights", "group"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        obj = getattr(mod, attr)
        if kind == "group":
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)


_register_optional()


def _silence_native_logs() -> None:
    """Drop what native libraries (MediaPipe/TFLite/absl) write straight to fd 2.

    Python's ``sys.stderr`` moves to a duplicate of the real stderr first, so our logs,
    progress and tracebacks still show. ``HOI_NATIVE_LOGS=1`` keeps the native logs.
    """
    if os.environ.get("HOI_NATIVE_LOGS"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        sys.stderr = open(saved, "w", buffering=1, closefd=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Console-script entry point: known errors anywhere (ours, a full disk) become one line and an exit code."""
    _silence_native_logs()
    try:
        app()
    except Exception as exc:
        known = known_error(exc)
        if known is None:
            raise  # a bug: keep its traceback
        print_error(known)
        sys.exit(int(known.exit_code))


if __name__ == "__main__":
    run()
