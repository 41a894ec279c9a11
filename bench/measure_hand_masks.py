"""Hand masks (03_segment's `hand_masks_from_inputs`) against reference masks, tuning and validation side by side.

Splits (as issue 13 names them for InterDyn; the wild clip was never tuned on):
    tune  InterDyn 125021 137875 141667 176110 182974 191021 (SAM2 ``hand`` masks);
    val   InterDyn 204076 208810 243 24815 33576 35671 (in 243 and 35671 only the right hand is
          masked: a correct left hand counts against there);
    wild  ``wild/handtrack_twohands`` (1280x720, two hands, no object; per-frame SAM2 hand masks
          colour-coded green / red, thresholded as in bench/measure_hands.py, resized to the run's
          working resolution);
    se    ``something_else`` (JPG frame folders with human-drawn hand boxes; 3201 has none, 57082 only
          3): box IoU only, the box around every hand pixel against the box around the frame's human
          hand boxes (frames with a human hand box; an empty mask counts 0). Its run folders are
          bench/measure_objects.py's (``se_<id>``).

Run folders through 02_hands are made (or brought up to date) with ``hoi preprocess --until 02_hands``.
Per clip: IoU (mean over frames with a reference hand covering >= 0.3% of the image; an empty mask
counts 0), IoU on the frames where the mask is not empty, frames missed (empty mask, reference hand
present), over = share of the mask's pixels off the reference (hand where there is none: fingers
hidden behind the object, the object, background), under = share of the reference's pixels the mask
misses; frames/s of the hand masks alone. A split's figure is the mean over its clips.

Usage: python bench/measure_hand_masks.py --runs /tmp/runs [--splits tune,val,wild,se] [--clips 243]
       [--set hand_band_px=8] [--json]
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
sys.path.insert(0, str(REPO / "bench"))

from hoi_cli.stages import segment as seg  # noqa: E402
from hoi_cli.stages.base import params_from_dict  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SPLITS = {"tune": ["125021", "137875", "141667", "176110", "182974", "191021"],
          "val": ["204076", "208810", "243", "24815", "33576", "35671"],
          "wild": ["handtrack_twohands"],
          "se": ["2", "22983", "44862", "57082", "77005"]}  # 3201: no hand box
MIN_FRACTION = 0.003  # a reference hand counts where it covers at least this share of the image


def source(clip: str) -> Path:
    return SHARED / "wild" / f"{clip}.mp4" if clip == "handtrack_twohands" else SHARED / "interdyn" / clip / "video.webm"


def missing(split: str, clip: str) -> Path | None:
    """The first file this clip's measurement needs that is absent, or None."""
    if split == "se":
        need = [SHARED / "something_else" / "annotations.json", SHARED / "something_else" / clip / "0001.jpg"]
    elif clip == "handtrack_twohands":
        need = [source(clip), SHARED / "wild" / "handtrack_twohands.hand_masks.mp4"]
    else:
        need = [source(clip), SHARED / "interdyn" / clip / "masks.npz"]
    return next((f for f in need if not f.exists()), None)


def reference(clip: str, T: int, H: int, W: int) -> np.ndarray:
    """``(T, H, W)`` bool: both hands, at the run's working resolution."""
    import cv2

    if clip == "handtrack_twohands":
        from hoi_cli.video import read_video

        from measure_hands import handtrack_hands

        colours, _ = read_video(SHARED / "wild" / "handtrack_twohands.hand_masks.mp4")
        hands = handtrack_hands(colours[:T])
        ref = hands["green"] | hands["red"]
    else:
        ref = np.load(SHARED / "interdyn" / clip / "masks.npz")["hand"].astype(bool)[:T]
    if ref.shape[1:] != (H, W):
        ref = np.stack([cv2.resize(m.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0 for m in ref])
    return ref


def score(pred: np.ndarray, ref: np.ndarray) -> dict:
    counted = ref.mean(axis=(1, 2)) >= MIN_FRACTION
    have = pred.any(axis=(1, 2))
    inter = (pred & ref).sum(axis=(1, 2))
    union = (pred | ref).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1)
    found = counted & have
    p, r = pred[counted], ref[counted]
    return {"iou": float(iou[counted].mean()), "iou_found": float(iou[found].mean()) if found.any() else float("nan"),
            "missed": int((counted & ~have).sum()), "frames": int(counted.sum()),
            "over": float((p & ~r).sum() / max(p.sum(), 1)), "under": float((r & ~p).sum() / max(r.sum(), 1))}


def se_score(pred: np.ndarray, clip: str) -> dict:
    """Box IoU of the hand mask's box against the human hand boxes' box, per frame with a human box."""
    from hoi_cli.conventions import box_from_mask, box_iou

    ann = json.loads((SHARED / "something_else" / "annotations.json").read_text())[clip]
    ious = []
    for e in ann:
        t = int(Path(e["name"]).stem) - 1
        bs = [lab["box2d"] for lab in e["labels"] if lab["category"] == "hand"]
        if not bs or not 0 <= t < len(pred):
            continue
        ref = np.array([min(b["x1"] for b in bs), min(b["y1"] for b in bs), max(b["x2"] for b in bs),
                        max(b["y2"] for b in bs)], np.float64)
        ious.append(float(box_iou(box_from_mask(pred[t])[None], ref[None])[0]) if pred[t].any() else 0.0)
    nan = float("nan")
    return {"iou": nan, "iou_found": nan, "missed": 0, "frames": len(ious), "over": nan, "under": nan,
            "box_iou": float(np.mean(ious)) if ious else nan}


def measure(runs: Path, splits: list[str], params: seg.Params, only: set[str]) -> list[dict]:
    from hoi_cli.stages.detect import load_detections
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stages.hands import load_mano

    rows = []
    for split in splits:
        for clip in SPLITS[split]:
            if only and clip not in only:
                continue
            absent = missing(split, clip)
            if absent is not None:
                print(f"skip {clip}: {absent} is absent", file=sys.stderr)
                continue
            if split == "se":
                from measure_objects import jpg_run

                run = jpg_run(runs, clip)
                frames = load_frames(run)
                T = len(frames)
            else:
                from measure_objects import preprocess_run

                run = preprocess_run(runs, source(clip), clip)
                frames = load_frames(run)
                T, H, W = frames.shape[:3]
                ref = reference(clip, T, H, W)
                T = min(T, len(ref))
            det = {k: (v[:T] if hasattr(v, "shape") and v.ndim and v.shape[0] >= T else v)
                   for k, v in load_detections(run).items()}
            mano = load_mano(run) if (run / "02_hands" / "mano.npz").exists() else None
            t0 = time.perf_counter()
            hand = seg.hand_masks_from_inputs(frames[:T], det, mano, params)
            sec = time.perf_counter() - t0
            scores = se_score(hand, clip) if split == "se" else score(hand, ref[:T])
            row = {"split": split, "clip": clip, **scores, "fps": T / sec}
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of run folders (made where missing)")
    ap.add_argument("--splits", default="tune,val,wild,se")
    ap.add_argument("--clips", default="", help="only these clip ids")
    ap.add_argument("--set", action="append", default=[], help="03_segment PARAM=VALUE")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    params = params_from_dict(seg.Params, dict(s.split("=", 1) for s in a.set))
    rows = measure(a.runs, [s for s in a.splits.split(",") if s], params, {c for c in a.clips.split(",") if c})
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        if "box_iou" in r:
            print(f"{r['split']:5s} {r['clip']:>18s}  box IoU {r['box_iou']:.3f} ({r['frames']} frames with a human "
                  f"hand box)  {r['fps']:.1f} f/s")
            continue
        print(f"{r['split']:5s} {r['clip']:>18s}  IoU {r['iou']:.3f}  where found {r['iou_found']:.3f}  missed "
              f"{r['missed']:3d}/{r['frames']:3d}  over {r['over']:.3f}  under {r['under']:.3f}  {r['fps']:.1f} f/s")
    print("MEAN (split): IoU / where found / over / under / frames/s (se: box IoU / frames/s)")
    for split in dict.fromkeys(r["split"] for r in rows):
        rs = [r for r in rows if r["split"] == split]
        if split == "se":
            frames = sum(r["frames"] for r in rs)
            by_frame = sum(r["box_iou"] * r["frames"] for r in rs) / max(frames, 1)
            print(f"  se    {np.mean([r['box_iou'] for r in rs]):.3f} / {np.mean([r['fps'] for r in rs]):.1f}"
                  f"  ({len(rs)} clips; over their {frames} frames: {by_frame:.3f})")
            continue
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("iou", "iou_found", "over", "under", "fps")}
        print(f"  {split:5s} {m['iou']:.3f} / {m['iou_found']:.3f} / {m['over']:.3f} / {m['under']:.3f} / {m['fps']:.1f}"
              f"  ({len(rs)} clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
