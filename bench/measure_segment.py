"""Accuracy and speed of 03_segment on the InterDyn clips of ../shared/data (reference SAM2 masks).

For each clip, from run folders made by ``hoi preprocess CLIP --out RUNS --run-id ID --until hands``
(00_frames, 01_detect, 02_hands), runs 03_segment's work (`segment_clip`) twice:

- ``own``: object boxes from 01_detect (the default, honest figure);
- ``oracle``: object boxes = the box of the reference object mask (all ``object_*`` masks merged),
  frames without a reference object get NaN.

and prints per clip: object IoU (mean over frames with a reference object), hand IoU (mean over
frames with a reference hand; in 243 and 35671 only the right hand is masked, so a correct left
hand counts against), object flicker (mean 1-IoU of consecutive masks; the reference's in
brackets), and frames/s of the whole stage work (hand masks + object masks).

``--redetect`` recomputes 01_detect's automatic object boxes from the run's hand detections with
the current code (``--detect-set KEY=VALUE`` overrides `ObjectConfig`), so object-proposal work
can be measured without rerunning the hand detector. Box IoU (own box vs the reference mask's
box, mean over frames with a reference object) is printed for the ``own`` mode.

``--key-offsets 0,1,2`` (with ``--redetect``) measures the ``own`` mode once per key-frame offset
(`ObjectConfig.key_offset`) and prints the mean of each and over all: the automatic boxes depend
on which frames are key frames, so one offset's figure overstates or understates the method.

Without run folders (``--no-runs``) it reads the clips directly and uses oracle boxes and
the reference hand mask as the hand region (development mode, no 01_detect/02_hands needed).

Usage: python bench/measure_segment.py --runs /tmp/runs [--clips 243,35671] [--mode own,oracle]
       [--set max_side=200 --set iterations=2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hoi_cli.conventions import box_from_mask  # noqa: E402
from hoi_cli.segment.grabcut import flicker  # noqa: E402
from hoi_cli.stages import segment as seg  # noqa: E402
from hoi_cli.stages.base import params_from_dict  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "interdyn"


def reference(clip_dir: Path, T: int):
    m = np.load(clip_dir / "masks.npz")
    objs = [m[k].astype(bool) for k in m.files if k.startswith("object_")]
    obj = np.any(np.stack(objs), axis=0)
    return obj[:T], m["hand"].astype(bool)[:T]


def iou_mean(pred: np.ndarray, ref: np.ndarray) -> float:
    vals = []
    for a, b in zip(pred, ref):
        if b.any():
            vals.append(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())
    return float(np.mean(vals)) if vals else float("nan")


def box_iou_mean(boxes, ref: np.ndarray) -> float:
    """Mean IoU of ``boxes`` (T,4; NaN = none, counts 0) against the reference masks' boxes."""
    if boxes is None:
        return float("nan")
    vals = []
    for b, m in zip(boxes, ref):
        if not m.any():
            continue
        r = box_from_mask(m)
        if not np.isfinite(b).all():
            vals.append(0.0)
            continue
        iw = max(0.0, min(b[2], r[2]) - max(b[0], r[0]))
        ih = max(0.0, min(b[3], r[3]) - max(b[1], r[1]))
        inter = iw * ih
        vals.append(inter / ((b[2] - b[0]) * (b[3] - b[1]) + (r[2] - r[0]) * (r[3] - r[1]) - inter))
    return float(np.mean(vals)) if vals else float("nan")


def load_inputs(clip: str, runs: Path | None):
    if runs is None:
        from hoi_cli.video import read_video

        frames, _ = read_video(DATA / clip / "video.webm")
        return frames, None, None
    from hoi_cli.stages.detect import load_detections
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stages.hands import load_mano

    run = runs / clip
    mano = load_mano(run) if (run / "02_hands" / "mano.npz").exists() else None
    return load_frames(run), load_detections(run), mano


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=None, help="folder of run folders named by clip id")
    ap.add_argument("--no-runs", action="store_true", help="oracle boxes + reference hands, no run folders")
    ap.add_argument("--clips", default="", help="comma-separated clip ids (default: all)")
    ap.add_argument("--mode", default="own,oracle")
    ap.add_argument("--set", action="append", default=[], help="03_segment PARAM=VALUE")
    ap.add_argument("--redetect", action="store_true", help="recompute the automatic object boxes")
    ap.add_argument("--detect-set", action="append", default=[], help="ObjectConfig KEY=VALUE (with --redetect)")
    ap.add_argument("--key-offsets", default="", help="with --redetect: own mode once per key offset, e.g. 0,1,2")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.key_offsets:
        if not a.redetect:
            ap.error("--key-offsets needs --redetect")
        per_offset = {}
        for o in (int(v) for v in a.key_offsets.split(",") if v):
            print(f"# key_offset {o}", file=sys.stderr, flush=True)
            per_offset[o] = _measure(a, ["own"], [f"key_offset={o}"])
        means = {o: s["own"]["object_iou"] for o, (_, s) in per_offset.items()}
        if a.json:
            print(json.dumps({"per_offset": {o: {"per_clip": r, "mean": s} for o, (r, s) in per_offset.items()},
                              "mean_over_offsets": float(np.mean(list(means.values())))}, indent=1))
        else:
            print("object IoU by key offset: " + "  ".join(f"{o}: {v:.3f}" for o, v in means.items())
                  + f"  | mean over offsets {np.mean(list(means.values())):.3f}")
        return 0
    results, summary = _measure(a, [m for m in a.mode.split(",") if m] if not a.no_runs else ["oracle"], [])
    if a.json:
        print(json.dumps({"per_clip": results, "mean": summary}, indent=1))
    else:
        for mode, s in summary.items():
            print(f"MEAN {mode:6s} box IoU {s['box_iou']:.3f}  object IoU {s['object_iou']:.3f}  hand IoU {s['hand_iou']:.3f}  "
                  f"{s['fps']:.1f} frames/s  ({len(results[mode])} clips)")
    return 0


def _measure(a, modes, extra_detect_set):
    """Per-clip results and per-mode means (see the module docstring)."""
    params = params_from_dict(seg.Params, dict(s.split("=", 1) for s in a.set))
    clips = [c for c in a.clips.split(",") if c] or sorted(p.name for p in DATA.iterdir() if p.is_dir())
    results: dict = {m: {} for m in modes}
    for clip in clips:
        frames, det, mano = load_inputs(clip, None if a.no_runs else a.runs)
        redetect_s = 0.0
        if a.redetect and det is not None:
            from hoi_cli.detect.objects import ObjectConfig, detect_objects

            cfg = params_from_dict(ObjectConfig, dict(s.split("=", 1) for s in a.detect_set + extra_detect_set))
            t0 = time.perf_counter()
            det = {**det, **detect_objects(frames, det, cfg)}
            redetect_s = time.perf_counter() - t0
        T = len(frames)
        ref_obj, ref_hand = reference(DATA / clip, T)
        T = min(T, len(ref_obj))
        frames, ref_obj, ref_hand = frames[:T], ref_obj[:T], ref_hand[:T]
        for mode in modes:
            d = dict(det) if det is not None else {}
            if mode == "oracle":
                d["object_boxes"] = np.stack([box_from_mask(m) for m in ref_obj])
            if a.no_runs:
                from hoi_cli.segment.grabcut import segment_sequence

                t0 = time.perf_counter()
                obj = segment_sequence(frames, d["object_boxes"], hand_masks=ref_hand, params=params.grabcut)
                res = {"object": obj, "hand": ref_hand}
            else:
                d = {k: (v[:T] if hasattr(v, "shape") and v.ndim and v.shape[0] >= T else v) for k, v in d.items()}
                t0 = time.perf_counter()
                res = seg.segment_clip(frames, d, mano, params)
            sec = time.perf_counter() - t0
            r = {"box_iou": box_iou_mean(d.get("object_boxes"), ref_obj),
                 "object_iou": iou_mean(res["object"], ref_obj), "hand_iou": iou_mean(res["hand"], ref_hand),
                 "flicker": flicker(res["object"]), "ref_flicker": flicker(ref_obj), "fps": T / sec, "frames": T,
                 "boxes_fps": T / redetect_s if redetect_s and mode == "own" else float("nan")}
            results[mode][clip] = r
            if not a.json and not a.key_offsets:
                print(f"{mode:6s} {clip:>7s}  box IoU {r['box_iou']:.3f}  object IoU {r['object_iou']:.3f}  hand IoU {r['hand_iou']:.3f}  "
                      f"flicker {r['flicker']:.3f} ({r['ref_flicker']:.3f})  {r['fps']:.1f} frames/s"
                      + (f" (boxes {r['boxes_fps']:.1f} frames/s)" if np.isfinite(r["boxes_fps"]) else ""), flush=True)
    summary = {}
    for mode, per in results.items():
        frames_total = sum(r["frames"] for r in per.values())
        seconds = sum(r["frames"] / r["fps"] for r in per.values())
        summary[mode] = {"box_iou": float(np.nanmean([r["box_iou"] for r in per.values()])),
                         "object_iou": float(np.nanmean([r["object_iou"] for r in per.values()])),
                         "hand_iou": float(np.nanmean([r["hand_iou"] for r in per.values()])),
                         "fps": frames_total / max(seconds, 1e-9)}
    return results, summary


if __name__ == "__main__":
    raise SystemExit(main())
