"""`hoi eval`: score generated videos against references (register as ``app.command("eval")(eval_command)``).

Importing this module is cheap: torch, OpenCV and the metric code are imported inside the function.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BadInputError, ExitCode, HoiError, OutputError, known_error
from ..metrics.evaluate import METRIC_GROUPS
from .common import (DEFAULT_DEVICE, DeviceOption, Format, FormatOption, WeightsDirOption, batch_exit_code, err,
                     fail, sigterm_as_interrupt)

METRIC_CHOICES = ",".join(METRIC_GROUPS)  # every selectable group of the metric registry
PathOption = Path | None


def eval_command(
    generated: Annotated[PathOption, typer.Option("--generated", "-g",
                                                  help="Generated video, frame folder or run folder.")] = None,
    reference: Annotated[PathOption, typer.Option("--reference", "-r",
                                                  help="Reference video, frame folder or run folder.")] = None,
    pairs: Annotated[PathOption, typer.Option(
        help="CSV of clip pairs: generated,reference[,name,generated_mask,reference_mask].")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", "-k", help=(
        "--pairs: go on with the other pairs after a failed one (without it the batch stops there); "
        "the pairs scored are written either way. With one pair (-g/-r) it makes a one-pair batch: "
        "a failure is recorded in the summary written, and the exit code is the batch's."))] = False,
    generated_mask: Annotated[PathOption, typer.Option(
        help="Object masks of the generated clip (mask video, folder or npz).")] = None,
    reference_mask: Annotated[PathOption, typer.Option(
        help="Object masks of the reference clip (mask video, folder or npz).")] = None,
    out: Annotated[PathOption, typer.Option("--out", "-o", help="Folder for metrics.json and per_clip.csv.")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated metric groups to compute.")] = METRIC_CHOICES,
    fmt: FormatOption = Format.text,
    weights_dir: WeightsDirOption = None,
    fid_weights: Annotated[PathOption, typer.Option(help="pt_inception-2015-12-05-6726825d.pth")] = None,
    i3d_weights: Annotated[PathOption, typer.Option(help="i3d_torchscript.pt")] = None,
    dino_weights: Annotated[PathOption, typer.Option(help="dino_vitbase16_pretrain.pth")] = None,
    alexnet_weights: Annotated[PathOption, typer.Option(help="alexnet-owt-7be5be79.pth (LPIPS)")] = None,
    amt_weights: Annotated[PathOption, typer.Option(help="amt-s_torchscript.pt (motion smoothness)")] = None,
    fid_resize: Annotated[str, typer.Option(help="FID resize convention: pytorch-fid or clean-fid.")] = "pytorch-fid",
    fvd_frames: Annotated[int, typer.Option(min=2, help="Frames per clip fed to I3D.")] = 16,
    hoi_crop: Annotated[bool, typer.Option("--hoi-crop/--no-hoi-crop",
                                           help="Also report PSNR/SSIM on the HOI box.")] = True,
    hoi_margin: Annotated[float, typer.Option(
        min=0.0, help="HOI box margin, fraction of its size per side.")] = 0.1,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Use at most this many frames per clip.")] = None,
    strict: Annotated[bool, typer.Option("--strict",
                                         help="A missing weights file is an error (exit 4), not a skip.")] = False,
    device: DeviceOption = DEFAULT_DEVICE,
) -> None:
    """Score generated HOI videos against references (PSNR/SSIM/LPIPS, FID/FVD, hand, temporal, object metrics)."""
    import sys

    from rich.console import Console

    def log(msg: str) -> None:
        err.print(msg, highlight=False, markup=False)

    batch = pairs is not None or keep_going  # one pair with --keep-going: a one-pair batch
    try:
        from ..metrics.evaluate import (ClipPair, EvalOptions, check_paths, evaluate, read_pairs_csv, render_table,
                                        to_json, write_outputs)

        if pairs is not None:
            if generated is not None or reference is not None:
                raise BadInputError("give either --pairs or --generated/--reference, not both", "pick one",
                                    exit_code=ExitCode.USAGE)
            clip_pairs = read_pairs_csv(pairs)
        else:
            if generated is None or reference is None:
                raise BadInputError("need --generated and --reference (or --pairs CSV)",
                                    "hoi eval --generated gen.mp4 --reference gt.mp4", exit_code=ExitCode.USAGE)
            clip_pairs = [ClipPair(generated, reference, generated_mask=generated_mask, reference_mask=reference_mask)]
            if not batch:  # a batch's missing file is its pair's failure, met when the pair's turn comes
                check_paths(clip_pairs[0])
        from ..device import resolve_device

        device = resolve_device(device)
        if out is not None:
            _check_writable(out)  # before minutes of metrics, not after
        from ..params import parse_list  # the one comma-list parser

        groups = parse_list(metrics, what="--metrics", example="psnr,ssim") or ()
        opts = EvalOptions(metrics=groups, weights_dir=weights_dir,
                           fid_weights=str(fid_weights) if fid_weights else None,
                           i3d_weights=str(i3d_weights) if i3d_weights else None,
                           dino_weights=str(dino_weights) if dino_weights else None,
                           alexnet_weights=str(alexnet_weights) if alexnet_weights else None,
                           amt_weights=str(amt_weights) if amt_weights else None,
                           fid_resize=fid_resize, fvd_frames=fvd_frames, hoi_crop=hoi_crop, hoi_margin=hoi_margin,
                           max_frames=max_frames, strict=strict, device=device)
        on_failure = "continue" if keep_going else "stop" if batch else "raise"
        with sigterm_as_interrupt() if batch else contextlib.nullcontext():  # SLURM's time limit
            doc = evaluate(clip_pairs, opts, log=log, on_failure=on_failure)
        if out is not None:
            paths = write_outputs(doc, out)
            log(f"wrote {paths['metrics']} and {paths['per_clip']}")
    except KeyboardInterrupt:
        if not batch:
            raise  # one pair: as before
        # a batch stopped outside its pairs (loading networks, pooling, writing): nothing more to keep
        fail(HoiError("interrupted", "run the same command again", exit_code=ExitCode.INTERRUPTED), fmt)
    except Exception as exc:
        fail(exc, fmt)  # a known error exits with its code; a bug re-raises with its traceback
    if fmt == Format.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        render_table(doc, Console())
    code = batch_exit_code(doc.get("pairs", []))  # one pair, no batch: 0 (its failure exited above)
    if code:
        raise typer.Exit(code)


def _check_writable(folder: Path) -> None:
    """Fail now (exit 6) where ``--out`` cannot take metrics.json and per_clip.csv."""
    import os

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file, not a folder", "give a folder for metrics.json and per_clip.csv")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        known = known_error(exc)
        if known is not None:
            raise known from None
        raise OutputError(f"cannot write to --out {folder}: {exc.strerror or exc}",
                          "choose a folder you can write to") from None
