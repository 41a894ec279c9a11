"""`hoi generate`: cross-object reenactment of a preprocessed clip (registered by hoi_cli.cli).

Importing this module is cheap: OpenCV, PyAV and torch are imported inside the function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import BadInputError, ExitCode, HoiError, known_error, print_error


def generate_command(
    run: Optional[Path] = typer.Argument(None, help="Run folder (runs/<clip-id>) made by `hoi preprocess`."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="Object image (PNG with alpha, or on a plain background)."),
    reference_from_frame: Optional[int] = typer.Option(None, "--reference-from-frame",
                                                       help="Self-reenactment: the clip's own object, cut from frame N."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4); a .json sidecar is written beside it."),
    batch: Optional[Path] = typer.Option(None, "--batch", help="CSV with columns run,reference[,out] (reference may be frame:N)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Batch: folder for the outputs."),
    keep_going: bool = typer.Option(True, "--keep-going/--stop-on-error", help="Batch: go on after a failed row."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Batch: skip rows whose video and sidecar exist."),
    allow_stale: bool = typer.Option(False, "--allow-stale",
                                     help="Generate from stale or manifest-less stages anyway (recorded in the sidecar)."),
    backend: str = typer.Option("composite", "--backend", help="composite (no weights), diffusion or wan (--checkpoint)."),
    object_scale: float = typer.Option(1.0, "--object-scale", min=0.05, help="Size of the new object relative to the source's."),
    size_mode: str = typer.Option("area", "--size-mode", help="What the new box keeps: area, width, height or auto."),
    contact_ratio: float = typer.Option(0.25, "--contact-ratio", min=0.0, help="Contact distance, fraction of the object box's longest side."),
    no_align_bottom: bool = typer.Option(False, "--no-align-bottom", help="Resize around the centre without keeping the bottom."),
    smooth: float = typer.Option(1.5, "--smooth", min=0.0, help="Temporal smoothing sigma in frames (layout, rotation, scale, colour)."),
    no_rotate: bool = typer.Option(False, "--no-rotate", help="Composite: do not follow the object's rotation."),
    harmonize: float = typer.Option(1.0, "--harmonize", min=0.0, help="Composite: colour-harmonisation strength multiplier (0 = off)."),
    anchor_frame: Optional[int] = typer.Option(None, "--anchor-frame", help="Composite: frame where the reference is upright."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Diffusion: `hoi train --out` folder or step folder."),
    base_dir: Optional[Path] = typer.Option(None, "--base-dir", help="Wan: local diffusers folder of the base model."),
    steps: int = typer.Option(25, "--steps", min=1, help="Diffusion: sampling steps."),
    guidance: float = typer.Option(3.0, "--guidance", help="Diffusion: classifier-free guidance scale."),
    strength: float = typer.Option(1.0, "--strength", min=0.0, max=1.0, help="Diffusion: SDEdit strength (1 = from noise)."),
    seed: int = typer.Option(0, "--seed", help="Diffusion: random seed."),
    device: str = typer.Option("auto", "--device", help="Diffusion: cpu, cuda or auto."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality (lower = better)."),
    fmt: str = typer.Option("text", "--format", help="text or json (summary on stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No log lines on stderr."),
) -> None:
    """Replace the object held in a preprocessed clip with the object of a reference image."""
    import sys

    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)  # a log line stays one line

    def log(msg: str) -> None:
        if not quiet:
            err.print(msg, highlight=False, markup=False)

    def fail(exc: HoiError) -> None:
        if fmt == "json":
            print(json.dumps({"ok": False, **exc.to_json()}))
        print_error(exc)
        raise typer.Exit(int(exc.exit_code))

    try:
        if fmt not in ("text", "json"):
            raise BadInputError(f"unknown --format {fmt!r}", "use text or json", exit_code=ExitCode.USAGE)
        if backend not in ("composite", "diffusion", "wan"):
            raise BadInputError(f"unknown --backend {backend!r}", "use composite, diffusion or wan", exit_code=ExitCode.USAGE)
        if size_mode not in ("area", "width", "height", "auto"):
            raise BadInputError(f"unknown --size-mode {size_mode!r}", "use area, width, height or auto",
                                exit_code=ExitCode.USAGE)
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
            strength=strength, seed=seed, device=device, base_dir=str(base_dir) if base_dir else None)
        if batch is not None:
            if run is not None or reference is not None or reference_from_frame is not None or out is not None:
                raise BadInputError("--batch takes no RUN, --reference, --reference-from-frame or --out",
                                    "put them in the CSV; give --out-dir", exit_code=ExitCode.USAGE)
            if out_dir is None:
                raise BadInputError("--batch needs --out-dir DIR", "hoi generate --batch pairs.csv --out-dir gen/",
                                    exit_code=ExitCode.USAGE)
            from ..generate.batch import read_pairs, run_batch

            rows = read_pairs(batch, out_dir)
            results = run_batch(rows, opts, keep_going=keep_going, skip_existing=skip_existing, log=log,
                                allow_stale=allow_stale)
            n_failed = sum(not r["ok"] for r in results)
            summary = {"ok": n_failed == 0, "n_rows": len(rows), "n_ok": len(results) - n_failed,
                       "n_failed": n_failed, "n_not_run": len(rows) - len(results), "results": results}
            if fmt == "json":
                print(json.dumps(summary, indent=1))
            else:
                for r in results:
                    status = "skipped" if r.get("skipped") else ("ok" if r["ok"] else f"FAILED: {r['error']}")
                    print(f"{r['run']}\t{r['reference']}\t{r['out']}\t{status}")
            if any(r.get("exit_code") == ExitCode.INTERRUPTED for r in results):
                raise typer.Exit(int(ExitCode.INTERRUPTED))
            if n_failed:
                codes = {r["exit_code"] for r in results if not r["ok"]}
                raise typer.Exit(codes.pop() if len(codes) == 1 else int(ExitCode.FAILED))
            return
        if run is None or out is None:
            raise BadInputError("need RUN and --out (or --batch CSV --out-dir DIR)",
                                "hoi generate runs/clip --reference mug.png --out gen/clip.mp4",
                                exit_code=ExitCode.USAGE)
        from ..generate.run import generate

        side = generate(run, out, reference=reference, reference_from_frame=reference_from_frame, options=opts,
                        log=log, allow_stale=allow_stale)
    except Exception as exc:
        known = known_error(exc)
        if known is None:
            raise  # a bug: its traceback
        fail(known)
        return
    if fmt == "json":
        summary = {"ok": True, "out": side["output"]["path"], "sidecar": side["sidecar"],
                   "frames": side["output"]["frames"], "fps": side["output"]["fps"],
                   "reference": side["reference"], "layout": {k: v for k, v in side["layout"].items()
                                                              if k not in ("object_boxes", "hand_boxes")},
                   "timings": side["timings"]}
        sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    else:
        print(f"{side['output']['path']}\t{side['output']['frames']} frames @ {side['output']['fps']:g} fps\t"
              f"sidecar {side['sidecar']}")
