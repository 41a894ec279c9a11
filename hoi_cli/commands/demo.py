"""`hoi demo`: the quick start's main job on the bundled sample clip.

Preprocesses the bundled ``hands_box.mp4`` (``hoi_cli/assets/sample``) with the full pipeline, generates a video with
the bundled mug as the held object (composite backend), and writes a contact sheet of every
stage. Each step is the library function the other commands call, not a copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_DEVICE, DeviceOption, Format, FormatOption, err, fail, recipe_help


def demo_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the run and the outputs.")] = Path("runs/demo"),
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help=recipe_help("Recipe to preprocess with"))] = "full",
    device: DeviceOption = DEFAULT_DEVICE,
    fmt: FormatOption = Format.text,
) -> None:
    """Preprocess the bundled sample clip, generate with the bundled mug, and write a contact sheet."""
    import contextlib
    import sys

    from ..device import check_device
    from ..errors import HoiError
    from ..generate.run import generate
    from ..pipeline import load_recipe, preprocess_clip
    from ..sample import SAMPLE_CLIP, SAMPLE_REFERENCE
    from .show import make_show

    run_dir = out_dir / SAMPLE_CLIP.stem
    try:
        device = check_device(device)
        err.print(f"preprocessing {SAMPLE_CLIP.name} -> {run_dir}", highlight=False)
        with contextlib.redirect_stdout(sys.stderr):
            outcomes = preprocess_clip(SAMPLE_CLIP, run_dir, load_recipe(pipeline), device=device,
                                       on_stage_start=lambda name, why: err.print(f"  {name} ({why})", highlight=False))
            video = out_dir / f"{SAMPLE_CLIP.stem}_{SAMPLE_REFERENCE.stem}.mp4"
            err.print(f"generating {video}", highlight=False)
            sidecar = generate(run_dir, video, reference=SAMPLE_REFERENCE)
            shown = make_show(run_dir, run_dir / "show", generated=video)  # the mug beside the removal
    except HoiError as exc:
        fail(exc, fmt)
    result = {"run": str(run_dir), "stages": {o.stage: o.action for o in outcomes}, "video": str(video),
              "sidecar": str(video.with_suffix(".json")), "contact_sheet": shown.get("sheet"),
              "side_by_side": shown.get("video"), "generate_seconds": sidecar.get("timings", {}).get("total_s")}
    if fmt == Format.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>14}: {value}")
