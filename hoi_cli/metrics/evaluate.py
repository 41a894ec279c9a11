"""`hoi eval` orchestration: clip pairs in, metrics.json / per_clip.csv / a table out.

Aggregation: every per-clip metric is a mean over the clip's frames (or its frame pairs);
the reported value is the mean over clips (clips where a value is not computable, NaN, are
left out and ``n_clips`` says how many counted). FID pools the frames of all clips; FVD uses
one I3D feature vector per clip.

Skipping: a metric whose weights file is missing is reported with ``status: "skipped"``,
the file it needs and the folders looked in; it is never dropped or replaced silently.
``strict`` turns any such skip into `MissingWeightsError` (exit code 4) before any work.
Motion smoothness is the exception by design: without AMT weights its weight-free variant
``motion_smoothness_flow`` is computed and the AMT one is listed as skipped (not an error).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BadInputError, MissingWeightsError

SCHEMA = "hoi.eval/1"
METRIC_GROUPS = ("psnr", "ssim", "lpips", "fid", "fvd", "hands", "subject_consistency", "motion_smoothness",
                 "objects")

# name -> (unit, higher_is_better, short definition)
METRIC_INFO: dict[str, tuple[str, bool | None, str]] = {
    "psnr": ("dB", True, "per-frame PSNR, uint8 RGB, data range 255; mean over frames, then clips"),
    "ssim": ("", True, "per-frame SSIM (skimage convention: Gaussian 11x11 sigma 1.5, RGB mean), mean over frames, then clips"),
    "psnr_hoi": ("dB", True, "PSNR on the hand-object box of the reference (ManiVideo's HOI region)"),
    "ssim_hoi": ("", True, "SSIM on the hand-object box of the reference"),
    "lpips": ("", False, "LPIPS v0.1 AlexNet, per frame at full resolution"),
    "fid": ("", False, "FID, Inception-v3 pool3, frames of all clips pooled"),
    "fvd": ("", False, "FVD, I3D Kinetics-400 logits, one clip = one sample"),
    "hand_agreement": ("", True, "mean IoU of generated vs reference hand boxes, matched by handedness; miss = 0"),
    "hand_fidelity": ("", True, "mean generated hand-detection confidence over reference hands; miss = 0"),
    "hand_fidelity_detected": ("", True, "mean confidence over hands detected in generated frames"),
    "hand_mpjpe_px": ("px", False, "2-D keypoint error of matched hands, mean over 21 joints"),
    "hand_mpjpe_norm": ("", False, "keypoint error / longer side of the reference hand box"),
    "hand_miss_rate": ("", False, "fraction of reference hands not detected in the generated frame"),
    "hand_extra_rate": ("", False, "fraction of generated hands with no reference hand in that frame and slot"),
    "subject_consistency": ("", True, "VBench subject consistency, DINO ViT-B/16, generated clip"),
    "subject_consistency_reference": ("", True, "the same on the reference clip (baseline)"),
    "motion_smoothness": ("", True, "VBench motion smoothness, AMT-S interpolation, generated clip"),
    "motion_smoothness_flow": ("", True, "motion smoothness, weight-free Farneback-flow interpolation variant, generated clip"),
    "motion_smoothness_flow_reference": ("", True, "the same on the reference clip (baseline)"),
    "object_mask_iou": ("", True, "per-frame IoU of generated vs reference object masks"),
    "object_appearance_colour": ("", True, "histogram intersection of RGB colours inside the object masks"),
    "object_appearance_dino": ("", True, "DINO cosine similarity of the masked object crops"),
}


@dataclass
class ClipPair:
    generated: Path
    reference: Path
    name: str = ""
    generated_mask: Path | None = None
    reference_mask: Path | None = None

    def __post_init__(self):
        self.generated, self.reference = Path(self.generated), Path(self.reference)
        self.generated_mask = Path(self.generated_mask) if self.generated_mask else None
        self.reference_mask = Path(self.reference_mask) if self.reference_mask else None
        if not self.name:
            g = self.generated
            self.name = g.stem if g.is_file() or g.suffix else g.name


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = METRIC_GROUPS
    weights_dir: str | None = None
    fid_weights: str | None = None
    i3d_weights: str | None = None
    dino_weights: str | None = None
    alexnet_weights: str | None = None
    amt_weights: str | None = None
    fid_resize: str = "pytorch-fid"
    fvd_frames: int = 16
    hoi_crop: bool = True
    hoi_margin: float = 0.1
    max_frames: int | None = None
    strict: bool = False
    device: str = "cpu"
    batch_size: int = 8
    reference_baselines: bool = True


def read_pairs_csv(path: str | Path) -> list[ClipPair]:
    """Clip pairs from a CSV with a header: ``generated,reference`` and optionally ``name``,
    ``generated_mask``, ``reference_mask``. Relative paths are relative to the CSV's folder."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"pairs CSV not found: {path}", "check the path")
    base = path.parent
    pairs = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"generated", "reference"} <= cols:
            raise BadInputError(f"pairs CSV {path} needs columns 'generated' and 'reference' (has: {sorted(cols)})",
                                "first line: generated,reference[,name,generated_mask,reference_mask]")

        def p(v):
            v = (v or "").strip()
            return (base / v if not Path(v).is_absolute() else Path(v)) if v else None

        for i, row in enumerate(reader):
            pairs.append(ClipPair(p(row["generated"]), p(row["reference"]), (row.get("name") or "").strip()
                                  or f"clip{i:04d}", p(row.get("generated_mask")), p(row.get("reference_mask"))))
    if not pairs:
        raise BadInputError(f"pairs CSV {path} has no rows", "add one line per clip pair")
    names = [c.name for c in pairs]
    if len(set(names)) != len(names):
        raise BadInputError(f"duplicate clip names in {path}", "give each row a distinct 'name'")
    return pairs


# ----------------------------------------------------------------------------- weights

WEIGHT_NEEDS = {  # metric group -> (KNOWN_WEIGHTS key, option attribute)
    "lpips": ("alexnet_lpips", "alexnet_weights"),
    "fid": ("fid_inception", "fid_weights"),
    "fvd": ("i3d_kinetics400", "i3d_weights"),
    "subject_consistency": ("dino_vitb16", "dino_weights"),
    "objects": ("dino_vitb16", "dino_weights"),  # only object_appearance_dino
    "motion_smoothness": ("amt_s", "amt_weights"),  # optional: flow variant otherwise
}
OPTIONAL_WEIGHTS = {"objects", "motion_smoothness"}  # a weight-free variant is computed without them


def resolve_weights(opts: EvalOptions) -> tuple[dict[str, Path], dict[str, MissingWeightsError]]:
    """Find the weight files of the requested metrics: ``(found, missing)`` by metric group."""
    from ..model_files import KNOWN_WEIGHTS
    from ..weights import find_weights

    found, missing = {}, {}
    for group in opts.metrics:
        if group not in WEIGHT_NEEDS:
            continue
        key, attr = WEIGHT_NEEDS[group]
        filename, what = KNOWN_WEIGHTS[key]
        try:
            found[group] = find_weights(filename, what=what, explicit=getattr(opts, attr),
                                        weights_dir=opts.weights_dir)
        except MissingWeightsError as exc:
            missing[group] = exc
    if "lpips" in found:
        from .pixel import lpips_lin_path

        try:
            lpips_lin_path(opts.weights_dir)
        except MissingWeightsError as exc:
            missing["lpips"] = exc
            found.pop("lpips")
    return found, missing


def _skip_entry(exc: MissingWeightsError) -> dict:
    return {"status": "skipped", "value": None, "reason": "missing weights", "needs": exc.filename,
            "looked_in": exc.looked_in, "hint": exc.hint}


# ----------------------------------------------------------------------------- helpers


def _load_pair(pair: ClipPair, opts: EvalOptions, log) -> tuple[np.ndarray, np.ndarray, dict]:
    import cv2

    from ..video import read_frames_any

    gen, fps_g = read_frames_any(pair.generated)
    ref, fps_r = read_frames_any(pair.reference)
    info = {"frames_generated": len(gen), "frames_reference": len(ref), "fps_generated": fps_g,
            "fps_reference": fps_r, "size_reference": [int(ref.shape[2]), int(ref.shape[1])],
            "size_generated": [int(gen.shape[2]), int(gen.shape[1])]}
    T = min(len(gen), len(ref))
    if opts.max_frames:
        T = min(T, opts.max_frames)
    if len(gen) != len(ref):
        log(f"{pair.name}: {len(gen)} generated vs {len(ref)} reference frames; using the first {T}")
    gen, ref = gen[:T], ref[:T]
    if gen.shape[1:3] != ref.shape[1:3]:
        log(f"{pair.name}: generated {gen.shape[2]}x{gen.shape[1]} resized to the reference's {ref.shape[2]}x{ref.shape[1]}")
        size = (ref.shape[2], ref.shape[1])
        interp = cv2.INTER_AREA if gen.shape[2] > ref.shape[2] else cv2.INTER_CUBIC
        gen = np.stack([cv2.resize(f, size, interpolation=interp) for f in gen])
        info["generated_resized"] = True
    info["n_frames"] = T
    return gen, ref, info


def _find_mask(explicit: Path | None, clip: Path) -> Path | None:
    if explicit:
        return explicit
    if clip.is_dir() and (clip / "03_segment" / "masks.npz").exists():
        return clip
    return None


def hoi_boxes(ref_det: dict | None, ref_masks: np.ndarray | None, T: int, H: int, W: int,
              margin: float = 0.1) -> np.ndarray:
    """Per-frame HOI box ``(T, 4)`` xyxy: the union of the reference's hand boxes (detected or
    interpolated) and its object-mask box, grown by ``margin`` times its size on each side,
    clipped to the frame; NaN where the frame has neither."""
    from ..conventions import box_from_mask

    boxes = np.full((T, 4), np.nan)
    for t in range(T):
        parts = []
        if ref_det is not None and t < len(ref_det["hand_boxes"]):
            for b in np.asarray(ref_det["hand_boxes"][t], dtype=np.float64):
                if np.isfinite(b).all():
                    parts.append(b)
        if ref_masks is not None and t < len(ref_masks):
            b = box_from_mask(ref_masks[t]).astype(np.float64)
            if np.isfinite(b).all():
                parts.append(b)
        if not parts:
            continue
        p = np.stack(parts)
        b = np.array([p[:, 0].min(), p[:, 1].min(), p[:, 2].max(), p[:, 3].max()])
        dx, dy = margin * (b[2] - b[0]), margin * (b[3] - b[1])
        boxes[t] = [max(0, b[0] - dx), max(0, b[1] - dy), min(W, b[2] + dx), min(H, b[3] + dy)]
    return boxes


def _mean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return math.nan
    v = v[~np.isnan(v)]  # NaN = not computable on that clip; inf (identical frames' PSNR) stays inf
    return float(v.mean()) if len(v) else math.nan


# ----------------------------------------------------------------------------- main


def evaluate(pairs: list[ClipPair], opts: EvalOptions, log: Callable[[str], None] = lambda m: None) -> dict:
    """Run the requested metrics over clip pairs; returns the metrics.json document."""
    import torch

    unknown = set(opts.metrics) - set(METRIC_GROUPS)
    if unknown:
        raise BadInputError(f"unknown metric(s): {', '.join(sorted(unknown))}",
                            f"choose from: {', '.join(METRIC_GROUPS)}")
    if not pairs:
        raise BadInputError("no clip pairs to evaluate", "give --generated and --reference, or --pairs CSV")
    from .fid import RESIZE_CONVENTIONS

    if opts.fid_resize not in RESIZE_CONVENTIONS:
        raise BadInputError(f"unknown FID resize convention {opts.fid_resize!r}",
                            f"choose from: {', '.join(RESIZE_CONVENTIONS)}")
    found, missing = resolve_weights(opts)
    if opts.strict:
        hard = {g: e for g, e in missing.items() if g not in OPTIONAL_WEIGHTS}
        if hard:
            raise next(iter(hard.values()))
    label = {"objects": "object_appearance_dino", "motion_smoothness": "motion_smoothness (AMT; the weight-free "
             "flow variant is computed instead)"}
    for g, e in missing.items():
        log(f"{label.get(g, g)}: skipped, {e.message}")
    want = set(opts.metrics)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}

    def timed(key, fn, *a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            timing[key] = timing.get(key, 0.0) + time.perf_counter() - t0

    models: dict = {}
    if "lpips" in found:
        from .pixel import LPIPSAlex, lpips_lin_path

        models["lpips"] = LPIPSAlex(found["lpips"], lpips_lin_path(opts.weights_dir), opts.device)
    if "fid" in found:
        from .fid import FIDFeatureExtractor

        models["fid"] = FIDFeatureExtractor(found["fid"], opts.fid_resize, opts.device, opts.batch_size)
    if "fvd" in found:
        from .fvd import I3DFeatureExtractor

        models["fvd"] = I3DFeatureExtractor(found["fvd"], opts.device)
    dino_path = found.get("subject_consistency") or found.get("objects")
    if dino_path is not None:
        from .temporal import DinoFeatures

        models["dino"] = DinoFeatures(dino_path, opts.device)
    if "motion_smoothness" in found:
        from .temporal import AMTInterpolator

        models["amt"] = AMTInterpolator(found["motion_smoothness"], opts.device)

    need_hands = "hands" in want or (opts.hoi_crop and want & {"psnr", "ssim"})
    detector = None
    clips: list[dict] = []
    fid_g, fid_r, fvd_g, fvd_r, fvd_counts = [], [], [], [], []
    for k, pair in enumerate(pairs):
        log(f"[{k + 1}/{len(pairs)}] {pair.name}")
        gen, ref, info = _load_pair(pair, opts, log)
        T, H, W = ref.shape[:3]
        m: dict[str, float] = {}
        rec = {"name": pair.name, "generated": str(pair.generated), "reference": str(pair.reference), **info,
               "metrics": m}
        gmask_path, rmask_path = _find_mask(pair.generated_mask, pair.generated), _find_mask(pair.reference_mask, pair.reference)
        gmasks = rmasks = None
        if gmask_path is not None and rmask_path is not None:
            from .objects import load_masks

            gmasks = load_masks(gmask_path, size=(W, H))[:T]
            rmasks = load_masks(rmask_path, size=(W, H))[:T]
            rec["masks"] = {"generated": str(gmask_path), "reference": str(rmask_path)}
        elif rmask_path is not None:
            from .objects import load_masks

            rmasks = load_masks(rmask_path, size=(W, H))[:T]
            rec["masks"] = {"reference": str(rmask_path)}

        gdet = rdet = None
        if need_hands:
            from .hands import detect, hand_metrics

            rdet, detector = timed("hand_detection", detect, ref)
            if "hands" in want:
                gdet, detector = timed("hand_detection", detect, gen)
                hm = timed("hands", hand_metrics, gdet, rdet)
                m.update({k2: v for k2, v in hm.items() if k2.startswith("hand_")})
                rec["hand_counts"] = {k2: v for k2, v in hm.items() if k2.startswith("n_")}
        from . import pixel

        if "psnr" in want:
            m["psnr"] = pixel.mean_psnr(timed("psnr", pixel.psnr_frames, gen, ref))
        if "ssim" in want:
            m["ssim"] = float(np.mean(timed("ssim", pixel.ssim_frames, gen, ref)))
        if opts.hoi_crop and want & {"psnr", "ssim"}:
            boxes = hoi_boxes(rdet, rmasks, T, H, W, opts.hoi_margin)
            crops = list(pixel.crop_pairs(gen, ref, boxes))
            rec["hoi_frames"] = len(crops)
            if crops:
                if "psnr" in want:
                    m["psnr_hoi"] = float(np.mean([timed("psnr", pixel.psnr_frames, g, r)[0] for _, g, r in crops]))
                if "ssim" in want:
                    m["ssim_hoi"] = float(np.nanmean([timed("ssim", pixel.ssim_frame, g, r) for _, g, r in crops]))
            else:
                m["psnr_hoi"] = m["ssim_hoi"] = math.nan
        if "lpips" in models:
            m["lpips"] = float(np.mean(timed("lpips", models["lpips"], gen, ref)))
        if "fid" in models:
            fid_g.append(timed("fid", models["fid"], gen))
            fid_r.append(timed("fid", models["fid"], ref))
        if "fvd" in models:
            fvd_g.append(timed("fvd", models["fvd"], [gen], opts.fvd_frames))
            fvd_r.append(timed("fvd", models["fvd"], [ref], opts.fvd_frames))
            fvd_counts.append(min(T, opts.fvd_frames))
        if "subject_consistency" in want and "dino" in models:
            from .temporal import subject_consistency_from_features

            m["subject_consistency"] = subject_consistency_from_features(timed("subject_consistency", models["dino"], gen))
            if opts.reference_baselines:
                m["subject_consistency_reference"] = subject_consistency_from_features(
                    timed("subject_consistency", models["dino"], ref))
        if "motion_smoothness" in want:
            from . import temporal

            if "amt" in models:
                m["motion_smoothness"] = timed("motion_smoothness", temporal.motion_smoothness_amt, gen, models["amt"])
            m["motion_smoothness_flow"] = timed("motion_smoothness_flow", temporal.motion_smoothness_flow, gen)
            if opts.reference_baselines:
                m["motion_smoothness_flow_reference"] = timed("motion_smoothness_flow",
                                                              temporal.motion_smoothness_flow, ref)
        if "objects" in want and gmasks is not None:
            from . import objects

            m["object_mask_iou"] = timed("objects", objects.mask_iou, gmasks, rmasks)["object_mask_iou"]
            m["object_appearance_colour"] = timed("objects", objects.appearance_colour, gen, ref, gmasks, rmasks)
            if "dino" in models:
                m["object_appearance_dino"] = timed("objects", objects.appearance_dino, gen, ref, gmasks, rmasks,
                                                    models["dino"])
        clips.append(rec)

    # ------------------------------------------------------------------ aggregate
    out_metrics: dict[str, dict] = {}

    def entry(name: str, value, **extra) -> dict:
        unit, hib, definition = METRIC_INFO[name]
        e = {"status": "ok", "value": value, "unit": unit, "higher_is_better": hib, "definition": definition}
        e.update(extra)
        out_metrics[name] = e
        return e

    per_clip_names = [n for n in METRIC_INFO if any(n in c["metrics"] for c in clips)]
    for name in per_clip_names:
        vals = [c["metrics"].get(name, math.nan) for c in clips]
        n_ok = int(sum(1 for v in vals if v is not None and not math.isnan(v)))
        e = entry(name, _mean(vals), n_clips=n_ok)
        if n_ok == 0:
            e["status"] = "not_computable"
            e["reason"] = _why_nan(name)
    if "psnr_hoi" in out_metrics:
        src = "reference hand boxes (" + (detector or "?") + ")"
        if any("masks" in c for c in clips):
            src += " + reference object-mask boxes"
        for n in ("psnr_hoi", "ssim_hoi"):
            if n in out_metrics:
                out_metrics[n]["boxes"] = src + f", margin {opts.hoi_margin:g} per side"
    if "fid" in want:
        if "fid" in models:
            from .fid import fid_from_features

            fg, fr = np.concatenate(fid_g), np.concatenate(fid_r)
            conv = {"resize": opts.fid_resize, "features": "Inception-v3 pool3 (2048)",
                    "weights": Path(found["fid"]).name, "n_frames_generated": len(fg), "n_frames_reference": len(fr)}
            try:
                entry("fid", timed("fid", fid_from_features, fg, fr), convention=conv)
            except ValueError as exc:
                entry("fid", None, convention=conv, status="not_computable", reason=str(exc))
            if len(fg) < 2048:
                out_metrics["fid"]["note"] = (f"{len(fg)} frames < 2048 features: covariance is rank-deficient, "
                                              "FID is biased upwards; compare only at equal frame counts")
        else:
            out_metrics["fid"] = {**_skip_entry(missing["fid"]), "definition": METRIC_INFO["fid"][2]}
    if "fvd" in want:
        if "fvd" in models:
            conv = {"frames_per_clip": opts.fvd_frames, "frames_used": sorted(set(fvd_counts)),
                    "resolution": 224, "features": "I3D logits (400)", "weights": Path(found["fvd"]).name,
                    "n_clips": len(fvd_g)}
            if len(fvd_g) < 2:
                entry("fvd", None, convention=conv, status="not_computable",
                      reason="FVD needs at least 2 clip pairs (a covariance over clips)")
            else:
                from .fvd import fvd_from_features

                entry("fvd", fvd_from_features(np.concatenate(fvd_g), np.concatenate(fvd_r)), convention=conv)
        else:
            out_metrics["fvd"] = {**_skip_entry(missing["fvd"]), "definition": METRIC_INFO["fvd"][2]}
    for group, names in (("lpips", ["lpips"]), ("subject_consistency", ["subject_consistency"]),
                         ("motion_smoothness", ["motion_smoothness"]), ("objects", ["object_appearance_dino"])):
        if group in want and group in missing:
            for n in names:
                e = {**_skip_entry(missing[group]), "definition": METRIC_INFO[n][2]}
                if group == "motion_smoothness":
                    e["reason"] = "missing weights; the weight-free motion_smoothness_flow is reported instead"
                out_metrics[n] = e
    if "objects" in want and not any("object_mask_iou" in c["metrics"] for c in clips):
        for n in ("object_mask_iou", "object_appearance_colour", "object_appearance_dino"):
            if out_metrics.get(n, {}).get("status") != "skipped":
                out_metrics[n] = {"status": "not_computable", "value": None, "definition": METRIC_INFO[n][2],
                                  "reason": "object masks are needed for both clips (--generated-mask and "
                                            "--reference-mask, CSV columns, or run folders with 03_segment)"}
    if "motion_smoothness_flow" in out_metrics:
        out_metrics["motion_smoothness_flow"]["variant"] = "weight-free Farneback optical-flow interpolation (not VBench's AMT)"
    for n in [k for k in out_metrics if k.startswith("hand_")]:
        out_metrics[n]["detector"] = detector

    import platform

    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    try:
        import cv2

        versions["opencv"] = cv2.__version__
        import mediapipe

        versions["mediapipe"] = mediapipe.__version__
    except Exception:  # pragma: no cover
        pass
    from .. import __version__

    doc = {
        "schema": SCHEMA,
        "hoi_version": __version__,
        "n_clips": len(clips),
        "metrics": {k: out_metrics[k] for k in sorted(out_metrics, key=_order)},
        "clips": [_jsonable_clip(c) for c in clips],
        "hand_detector": detector,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "weights": {g: str(p) for g, p in found.items()},
        "versions": versions,
        "timing_s": {k: round(v, 3) for k, v in timing.items()} | {"total": round(time.perf_counter() - t_start, 3)},
    }
    return doc


def _why_nan(name: str) -> str:
    if name.startswith("hand_"):
        return "no hands detected in the reference (or none matched)"
    if name.endswith("_hoi"):
        return "no hand or object box in the reference frames"
    return "not computable on these clips (too few frames or empty masks)"


def _order(name: str) -> int:
    keys = list(METRIC_INFO)
    return keys.index(name) if name in keys else len(keys)


def _jsonable_clip(c: dict) -> dict:
    return {k: v for k, v in c.items()}


def _clean(x):
    """JSON-safe: NaN -> null, +-inf -> "inf"/"-inf", numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def to_json(doc: dict) -> str:
    return json.dumps(_clean(doc), indent=2)


def write_outputs(doc: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json`` and ``per_clip.csv`` into ``out_dir`` (each via a temp file + rename)."""
    import os

    from ..errors import OutputError

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        mj = out / "metrics.json"
        tmp = out / ".metrics.json.tmp"
        tmp.write_text(to_json(doc) + "\n")
        os.replace(tmp, mj)
        names = [n for n in METRIC_INFO if any(n in c["metrics"] for c in doc["clips"])]
        pc = out / "per_clip.csv"
        tmp = out / ".per_clip.csv.tmp"
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "generated", "reference", "n_frames"] + names)
            for c in doc["clips"]:
                row = [c["name"], c["generated"], c["reference"], c["n_frames"]]
                for n in names:
                    v = c["metrics"].get(n, math.nan)
                    row.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else
                               ("inf" if isinstance(v, float) and math.isinf(v) else f"{v:.6g}"))
                w.writerow(row)
        os.replace(tmp, pc)
    except OSError as exc:
        raise OutputError(f"cannot write results to {out}: {exc}", "check --out is a writable folder") from None
    return {"metrics": mj, "per_clip": pc}


def render_table(doc: dict, console=None) -> None:
    """Print the metrics as a rich table (to stdout unless ``console`` says otherwise)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"hoi eval: {doc['n_clips']} clip pair(s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("", justify="center")
    table.add_column("notes", overflow="fold")
    for name, e in doc["metrics"].items():
        v = e.get("value")
        if e["status"] == "skipped":
            val, note = "skipped", f"needs {e['needs']}"
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            val, note = "n/a", e.get("reason", "")
        else:
            val = "inf" if isinstance(v, float) and math.isinf(v) else f"{v:.4f}"
            if e.get("unit"):
                val += f" {e['unit']}"
            note = ""
            if "convention" in e and name == "fid":
                note = f"resize={e['convention']['resize']}, {e['convention']['n_frames_generated']} frames"
            elif "convention" in e and name == "fvd":
                note = f"{e['convention']['frames_used']} frames/clip, {e['convention']['n_clips']} clips"
            elif "variant" in e:
                note = "weight-free flow variant"
        arrow = {True: "↑", False: "↓"}.get(e.get("higher_is_better"), "")
        table.add_row(name, val, arrow, note)
    console.print(table)
    if doc.get("hand_detector"):
        console.print(f"hand detector: {doc['hand_detector']}")
