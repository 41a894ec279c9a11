"""`hoi generate`: cross-object reenactment of a preprocessed clip (registered by hoi_cli.cli).

Importing this module is cheap: OpenCV, PyAV and torch are imported inside the function.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInputError, ExitCode
from .common import (DEFAULT_DEVICE, DeviceOption, Format, FormatOption, QuietOption, batch_exit_code, batch_summary,
                     err, fail, sigterm_as_interrupt)


class Backend(str, Enum):
    composite = "composite"
    diffusion = "diffusion"
    wan = "wan"


class SizeMode(str, Enum):
    area = "area"
    width = "width"
    height = "height"
    auto = "auto"


def generate_command(
    run: Annotated[Path | None, typer.Argument(metavar="RUN", help="Run folder (runs/<clip-id>) made by `hoi preprocess`.")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", "-r", help="Object image (PNG with alpha, or on a plain background).")] = None,
    reference_from_frame: Annotated[int | None, typer.Option(
        help="Self-reenactment: the clip's own object, cut from frame N.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output video (.mp4); a .json sidecar is written beside it.")] = None,
    batch: Annotated[Path | None, typer.Option(
        help="CSV with columns run,reference[,out] (reference may be frame:N).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Batch: folder for the outputs.")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going/--stop-on-error",
                                             help="Batch: go on after a failed row.")] = True,
    skip_existing: Annotated[bool, typer.Option("--skip-existing",
                                                help="Batch: skip rows whose video and sidecar exist.")] = False,
    allow_stale: Annotated[bool, typer.Option(
        "--allow-stale", help="Generate from stale or manifest-less stages anyway (recorded in the sidecar).")] = False,
    backend: Annotated[Backend, typer.Option(
        help="composite (no weights), diffusion or wan (both need --checkpoint).")] = Backend.composite,
    object_scale: Annotated[float, typer.Option(
        min=0.05, help="Size of the new object relative to the source's.")] = 1.0,
    size_mode: Annotated[SizeMode, typer.Option(help="What the new box keeps.")] = SizeMode.area,
    contact_ratio: Annotated[float, typer.Option(
        min=0.0, help="Contact distance, fraction of the object box's longest side.")] = 0.25,
    no_align_bottom: Annotated[bool, typer.Option(
        "--no-align-bottom", help="Resize around the centre without keeping the bottom.")] = False,
    smooth: Annotated[float, typer.Option(
        min=0.0, help="Temporal smoothing sigma in frames (layout, rotation, scale, colour).")] = 1.5,
    no_rotate: Annotated[bool, typer.Option("--no-rotate",
                                            help="Composite: do not follow the object's rotation.")] = False,
    harmonize: Annotated[float, typer.Option(
        min=0.0, help="Composite: colour-harmonisation strength multiplier (0 = off).")] = 1.0,
    anchor_frame: Annotated[int | None, typer.Option(
        help="Composite: frame where the reference is upright.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        help="Diffusion: `hoi train --out` folder or step folder.")] = None,
    base_dir: Annotated[Path | None, typer.Option(help="Wan: local diffusers folder of the base model.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Diffusion: sampling steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Diffusion: classifier-free guidance scale.")] = 3.0,
    strength: Annotated[float, typer.Option(min=0.0, max=1.0,
                                            help="Diffusion: SDEdit strength (1 = from noise).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Diffusion: random seed.")] = 0,
    shift: Annotated[float | None, typer.Option(
        min=0.01, help="Diffusion/Wan: sampler time shift s (t -> s*t/(1+(s-1)*t)); default: the model's.")] = None,
    device: DeviceOption = DEFAULT_DEVICE,
    crf: Annotated[int, typer.Option(min=0, max=51, help="H.264 quality (lower = better).")] = 18,
    fmt: FormatOption = Format.text,
    quiet: QuietOption = False,
) -> None:
    """Replace the object held in a preprocessed clip with the object of a reference image."""
    import sys

    def log(msg: str) -> None:
        if not quiet:
            err.print(msg, highlight=False, markup=False)

    backend, size_mode = backend.value, size_mode.value
    try:
        from ..device import check_device

        device = check_device(device)
        if backend in ("diffusion", "wan") and checkpoint is None:
            raise BadInputError(f"--backend {backend} needs --checkpoint CKPT",
                                "train one with `hoi train`, or use --backend composite (no weights)",
                                exit_code=ExitCode.USAGE)
        from ..generate.composite import CompositeParams
        from ..generate.layout import LayoutParams
        from ..generate.run import GenerateOptions

        base = CompositeParams()
        opts = GenerateOptions(
            backend=backend,
            layout=LayoutParams(contact_ratio=contact_ratio, size_mode=size_mode, scale=object_scale,
                                align_bottom=not no_align_bottom, smooth_sigma=smooth),
            composite=CompositeParams(rotate=not no_rotate, smooth_sigma=smooth, anchor_frame=anchor_frame,
                                      harmonize_l=base.harmonize_l * harmonize, harmonize_ab=base.harmonize_ab * harmonize,
                                      harmonize_std=base.harmonize_std * harmonize),
            crf=crf, checkpoint=str(checkpoint) if checkpoint else None, steps=steps, guidance=guidance,
            strength=strength, seed=seed, shift=shift, device=device, base_dir=str(base_dir) if base_dir else None)
        if batch is not None:
            if run is not None or reference is not None or reference_from_frame is not None or out is not None:
                raise BadInputError("--batch takes no RUN, --reference, --reference-from-frame or --out",
                                    "put them in the CSV; give --out-dir", exit_code=ExitCode.USAGE)
            if out_dir is None:
                raise BadInputError("--batch needs --out-dir DIR", "hoi generate --batch pairs.csv --out-dir gen/",
                                    exit_code=ExitCode.USAGE)
            from ..generate.batch import read_pairs, run_batch

            rows = read_pairs(batch, out_dir)
            with sigterm_as_interrupt():  # SLURM's time limit: the rows done are kept and the summary written
                results = run_batch(rows, opts, keep_going=keep_going, skip_existing=skip_existing, log=log,
                                    allow_stale=allow_stale,  # a failed row is said even with -q, as in preprocess
                                    log_error=lambda m: err.print(m, highlight=False, markup=False))
            summary = {**batch_summary(results, len(rows)), "n_rows": len(rows), "results": results}
            if fmt == Format.json:
                print(json.dumps(summary, indent=1))
            else:
                for r in results:
                    status = "skipped" if r.get("skipped") else ("ok" if r["ok"] else f"FAILED: {r['error']}")
                    print(f"{r['run']}\t{r['reference']}\t{r['out']}\t{status}")
            code = batch_exit_code(results)
            if code:
                raise typer.Exit(code)
            return
        if run is None or out is None:
            raise BadInputError("need RUN and --out (or --batch CSV --out-dir DIR)",
                                "hoi generate runs/clip --reference mug.png --out gen/clip.mp4",
                                exit_code=ExitCode.USAGE)
        from ..generate.run import generate

        side = generate(run, out, reference=reference, reference_from_frame=reference_from_frame, options=opts,
                        log=log, allow_stale=allow_stale)
    except Exception as exc:
        fail(exc, fmt)  # a known error exits with its code; a bug re-raises with its traceback
    if fmt == Format.json:
        summary = {"ok": True, "out": side["output"]["path"], "sidecar": side["sidecar"],
                   "frames": side["output"]["frames"], "fps": side["output"]["fps"],
                   "reference": side["reference"], "layout": {k: v for k, v in side["layout"].items()
                                                              if k not in ("object_boxes", "hand_boxes")},
                   "timings": side["timings"]}
        sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    else:
        print(f"{side['output']['path']}\t{side['output']['frames']} frames @ {side['output']['fps']:g} fps\t"
              f"sidecar {side['sidecar']}")
