"""`hoi generate` as a function: one run folder + one reference -> video.mp4 + video.json.

The JSON sidecar (beside the video, same stem, ``.json``) records: the backend, its
parameters (layout, composite, reference preparation), the reference (path, sha256, method,
aspect, size), the run (path, the fingerprints and output digests of every stage read, and
``run_fingerprint``: sha256 over those), the output (frames, fps, size, sha256 of the mp4),
the layout summary and the timings.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

from ..errors import BadInputError, HoiError, OutputError, known_error
from ..stages import detect, frames as frames_stage, genhoi, hands, layout, mlo, segment, silhouette
from ..stages.base import RunReader
from .composite import CompositeParams
from .layout import LayoutParams
from .reference import Reference, ReferenceParams

# every stage either backend reads (diffusion also reads 02, 05 and 06): the sidecar fingerprints them all
STAGES_READ = tuple(s.NAME for s in (frames_stage, detect, hands, segment, mlo, silhouette, layout))
# read where it is fresh (the composite backend reuses its object removal); fingerprinted too
OPTIONAL_STAGES = (genhoi.NAME,)


@dataclass
class GenerateOptions:
    backend: str = "composite"
    layout: LayoutParams = field(default_factory=LayoutParams)
    composite: CompositeParams = field(default_factory=CompositeParams)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    crf: int = 18
    # diffusion backend
    checkpoint: str | None = None
    steps: int = 25
    guidance: float = 3.0
    shift: float | None = None  # diffusion: the sampler's time shift (None: the model's flow_shift)
    strength: float = 1.0
    seed: int = 0
    device: str = "auto"
    base_dir: str | None = None  # wan backend: the local diffusers folder of the base model


def run_fingerprint(run_dir: Path) -> dict:
    """Fingerprints and output digests of the stages `hoi generate` reads, and one digest over them."""
    reader = RunReader(run_dir)
    stages = {}
    for name in STAGES_READ + OPTIONAL_STAGES:
        m = reader.manifest(name)
        if m is not None:
            stages[name] = {"fingerprint": m.get("fingerprint"), "output_digest": m.get("output_digest")}
    text = json.dumps(stages, sort_keys=True, separators=(",", ":"))
    return {"stages": stages, "run_fingerprint": hashlib.sha256(text.encode()).hexdigest()}


def check_run(run_dir: Path, allow_stale: bool = False) -> dict:
    """Refuse to build on stale, corrupt or manifest-less stages; returns what the sidecar records.

    Each stage folder present is judged as `hoi status` does (its recorded parameters, its
    upstream stages, a cheap size/mtime re-check of its files). ``allow_stale`` generates
    anyway and records what was stale. 07_genhoi is optional: it is reused only when fresh.
    """
    from ..pipeline import run_status

    stale = {}
    states = run_status(run_dir)
    for name in STAGES_READ + OPTIONAL_STAGES:
        folder = run_dir / name
        if not folder.is_dir():
            continue
        state = states.get(name, {"status": "missing", "reason": ""})
        if not (folder / "manifest.json").exists():
            stale[name] = "has no manifest (an incomplete folder, or not made by `hoi preprocess`)"
        elif state["status"] != "ok":
            stale[name] = f"is {state['status']}: {state['reason']}".rstrip(": ")
    blocking = {k: v for k, v in stale.items() if k not in OPTIONAL_STAGES}
    if blocking and not allow_stale:
        first = next(iter(blocking))
        more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise BadInputError(f"{run_dir.name}: stage {first} {blocking[first]}{more}",
                            "bring the run up to date with `hoi preprocess` (see `hoi status`), "
                            "or pass --allow-stale to generate from it as it is")
    # 07_genhoi's removal is reused only when `hoi status` would call it ok: its recorded
    # parameters, its fingerprint over 03_segment's current outputs, and its files on disk
    return {"allow_stale": allow_stale, "stale": stale,
            "genhoi_fresh": RunReader(run_dir).has(genhoi) and genhoi.NAME not in stale}


def prepare_reference(run_dir: Path, reference: str | Path | None, from_frame: int | None,
                      params: ReferenceParams, frames: np.ndarray | None = None,
                      masks: dict | None = None) -> Reference:
    from .reference import load_reference, reference_from_frame

    if (reference is None) == (from_frame is None):
        raise BadInputError("give exactly one of --reference IMAGE and --reference-from-frame N",
                            "e.g. hoi generate RUN --reference mug.png --out out.mp4")
    if reference is not None:
        return load_reference(reference, params)
    T = len(frames)
    if not (0 <= from_frame < T):
        raise BadInputError(f"--reference-from-frame {from_frame} is outside the clip (0..{T - 1})",
                            "pick a frame index of the run")
    return reference_from_frame(frames[from_frame], masks["object"][from_frame], params,
                                source=f"run:{Path(run_dir).resolve()}#frame={from_frame}")


def generate(run_dir: str | Path, out: str | Path, *, reference: str | Path | None = None,
             reference_from_frame: int | None = None, options: GenerateOptions | None = None,
             log: Callable[[str], None] = lambda m: None,
             progress: Callable[[int, int], None] | None = None, allow_stale: bool = False) -> dict:
    """Generate one video; returns the sidecar dict (also written beside the video).

    Holds the run's lock for reading (a `hoi preprocess` of the same run waits, or is
    refused), and refuses stale or manifest-less stages unless ``allow_stale``.
    """
    from ..store import RunStore

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run folder not found: {run_dir}", "pass a runs/<clip-id> folder made by `hoi preprocess`")
    store = RunStore(run_dir)
    store.acquire_lock(shared=True)
    try:
        checks = check_run(run_dir, allow_stale)
        for name, why in checks["stale"].items():
            log(f"warning: {run_dir.name}: {name} {why}" + (" (not reused)" if name in OPTIONAL_STAGES
                                                               else " (--allow-stale)"))
        try:
            return _generate(run_dir, out, reference=reference, reference_from_frame=reference_from_frame,
                             options=options, log=log, progress=progress, checks=checks)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as exc:
            if known_error(exc) is not None or isinstance(exc, HoiError):
                raise
            if not isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)) and not _from_loader(exc):
                raise
            raise BadInputError(f"{run_dir.name}: a stage output cannot be read ({type(exc).__name__}: {exc})",
                                "check the run with `hoi status --verify` and rerun `hoi preprocess`") from exc
    finally:
        store.release_lock()


def _from_loader(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while numpy/zipfile/json read a file (a corrupt output), not by our own code."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(part in frames[-1].filename for part in ("/numpy/lib/", "/zipfile", "/json/"))


def _generate(run_dir: str | Path, out: str | Path, *, reference: str | Path | None = None,
              reference_from_frame: int | None = None, options: GenerateOptions | None = None,
              log: Callable[[str], None] = lambda m: None,
              progress: Callable[[int, int], None] | None = None, checks: dict | None = None) -> dict:
    from .. import __version__
    from ..store import file_digest
    from ..video import VideoWriter
    from . import inputs

    opts = options or GenerateOptions()
    run_dir, out = Path(run_dir), Path(out)
    t0 = time.perf_counter()
    if not run_dir.is_dir():
        raise BadInputError(f"run folder not found: {run_dir}", "pass a runs/<clip-id> folder made by `hoi preprocess`")
    if out.suffix.lower() != ".mp4":
        raise BadInputError(f"--out must be an .mp4 path, got {out}", "e.g. --out generated/clip.mp4")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror}", "pick a writable --out") from None
    if opts.backend not in ("composite", "diffusion", "wan"):
        raise BadInputError(f"unknown backend {opts.backend!r}", "use --backend composite, diffusion or wan")
    if opts.composite.anchor_frame is None and reference_from_frame is not None:
        opts.composite.anchor_frame = reference_from_frame

    run = RunReader(run_dir)
    source = run.read(frames_stage)
    meta, frames = source.meta, source.load()
    masks = run.read(segment)
    det = run.read(detect)
    T = len(frames)
    for k in ("object", "hand"):
        if masks[k].shape[0] != T or masks[k].shape[1:] != frames.shape[1:3]:
            raise BadInputError(f"03_segment {k} masks {masks[k].shape} do not match the frames {frames.shape[:3]}",
                                "rerun `hoi preprocess` (the stages are out of date)")
    if not masks["object"].any():
        raise BadInputError(f"{run_dir.name}: the object mask is empty in every frame",
                            "check 01_detect's object prompt (--object-box/--object-point) and rerun 03_segment")
    ref = prepare_reference(run_dir, reference, reference_from_frame, opts.reference, frames, masks)
    hand_boxes = det.get("hand_boxes_square", det.get("hand_boxes"))
    hand_boxes = np.asarray(hand_boxes, np.float32)[:T]
    object_boxes = np.asarray(det["object_boxes"], np.float32)[:T] if "object_boxes" in det else None
    hand_in_front = inputs.load_hand_in_front(run_dir, masks["hand"].shape, log=log)
    fps = float(meta.get("fps") or 25.0)
    t_load = time.perf_counter() - t0

    tmp = out.with_name(f".{out.stem}.partial.mp4")
    if opts.backend == "composite":
        from .composite import composite_clip

        # 07_genhoi already removed the object (same operation: dilated mask, hands kept): reuse it
        # where it is fresh (`check_run`) and made with the same dilation
        background = None
        fresh = (checks or {}).get("genhoi_fresh", run.has(genhoi))
        cached = run.read(genhoi, frames=frames)["object_removed"] if fresh else None
        if cached is not None and cached[2] == opts.composite.remove_dilate_px:
            background = cached[0]
            log("object removal: reused from 07_genhoi")

        try:
            with VideoWriter(tmp, fps, crf=opts.crf) as writer:
                res = composite_clip(frames, masks["object"], masks["hand"], ref, hand_boxes,
                                     object_boxes=object_boxes, hand_in_front=hand_in_front,
                                     params=opts.composite, layout_params=opts.layout, writer=writer,
                                     keep_frames=False, background=background, progress=progress, log=log)
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc}", "pick a writable --out") from None
        layout, timings = res.layout, res.timings
        track = {"anchor_frame": res.track.anchor,
                 "angle_deg": [round(float(a), 3) for a in res.track.angle_deg],
                 "scale": [round(float(s), 4) for s in res.track.scale]}
    elif opts.backend == "wan":
        from ..models.wan.cli import wan_clip

        layout, timings, track = wan_clip(run_dir, frames, masks, ref, hand_boxes, object_boxes, opts, tmp,
                                          fps, log=log, progress=progress)
    else:
        from .diffusion import diffusion_clip

        layout, timings, track = diffusion_clip(run_dir, frames, masks, ref, hand_boxes, object_boxes, opts, tmp,
                                                fps, log=log, progress=progress)
    tmp.replace(out)
    sidecar = {
        "hoi_version": __version__,
        "backend": opts.backend,
        "run": {"path": str(run_dir.resolve()), **run_fingerprint(run_dir),
                "allow_stale": (checks or {}).get("allow_stale", False), "stale": (checks or {}).get("stale", {}),
                "object_removal": genhoi.NAME if opts.backend == "composite" and background is not None else "computed",
                "hand_depth_order": mlo.NAME if hand_in_front is not None else "visible hand pixels in front"},
        "reference": ref.to_json(),
        "params": {"layout": opts.layout.to_json(), "composite": opts.composite.to_json(),
                   "reference": {k: v for k, v in vars(opts.reference).items()}, "crf": opts.crf,
                   **({"checkpoint": opts.checkpoint, "steps": opts.steps, "guidance": opts.guidance,
                       "strength": opts.strength, "seed": opts.seed, "shift": opts.shift} if opts.backend in ("diffusion", "wan") else {})},
        "output": {"path": str(out.resolve()), "sha256": file_digest(out), "frames": T, "fps": fps,
                   "width": int(frames.shape[2]), "height": int(frames.shape[1]), "codec": "h264"},
        "layout": {**layout.summary(),
                   "object_boxes": np.round(layout.object_boxes, 2).tolist(),
                   "hand_boxes": np.round(layout.hand_boxes, 2).tolist()},
        "track": track,
        "timings": {"load_s": round(t_load, 4), **{k: round(v, 4) for k, v in timings.items()},
                    "total_s": round(time.perf_counter() - t0, 4)},
    }
    sidecar_path = out.with_suffix(".json")
    sidecar_path.write_text(json.dumps(_clean(sidecar), indent=1, default=_json_nan))
    sidecar["sidecar"] = str(sidecar_path)
    _log_in_run(run_dir, out, sidecar_path)
    return sidecar


def _log_in_run(run_dir: Path, video: Path, sidecar_path: Path) -> None:
    """Note the video and its sidecar in the run folder's `GENERATED_LOG`, so `hoi show RUN` finds a video
    written anywhere; once per sidecar (regenerating to the same path adds no line). Best effort: a
    read-only run folder still generates (the sidecar beside the video is the record)."""
    from ..store import GENERATED_LOG

    log = Path(run_dir) / GENERATED_LOG
    entry = {"video": str(video.resolve()), "sidecar": str(sidecar_path.resolve())}
    try:
        if log.exists() and f'"sidecar": {json.dumps(entry["sidecar"])}' in log.read_text():
            return
        with open(log, "a") as f:
            f.write(json.dumps({**entry, "time": time.time()}) + "\n")
    except OSError:
        pass


def _clean(o):
    """NaN -> null (strict JSON)."""
    if isinstance(o, float):
        return None if o != o else o
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _json_nan(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)
