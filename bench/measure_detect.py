"""Accuracy of 01_detect on the InterDyn clips of ../shared/data (reference SAM2 masks).

Prints per clip and overall:

- hand recall: of the frames whose reference hand mask covers >= 0.3% of the image, the
  fraction with a detected hand ("any": any detection; "on-mask": a detection whose tight box
  is >= 5% reference-hand pixels);
- hand box IoU, two ways: "union" = IoU of the union of the detected boxes (slots 0 and 1)
  with the box of the whole reference hand mask (which merges both hands); "cc" = per
  detection, IoU with the box of the mask's connected component (>= 0.1% of the image) that
  overlaps it most;
- false-detection rate: detections whose tight box holds < 5% reference-hand pixels, over all
  detections. In clips 243 and 35671 only the right hand is masked: there a slot-0 (left)
  detection off the mask is counted as "unverifiable" (likely the real, unmasked left hand),
  not as false, and listed separately; a slot-1 detection off the mask still counts as false;
- slot check on 243/35671: fraction of on-mask detections that are in slot 1 (right);
- object box IoU in two modes: prompted by the reference box of the first frame where the
  object is visible, and automatic (no prompt). The reference is the box of the union of all
  ``object_*`` masks of the clip (cup+tape in 125021); frames with no object mask are skipped.

Usage: python bench/measure_detect.py [--clips 243,35671] [--baseline] [--no-objects] [--json]
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

from hoi_cli.conventions import box_from_mask, box_iou  # noqa: E402
from hoi_cli.video import read_video  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "interdyn"
RIGHT_ONLY = {"243", "35671"}
MIN_AREA = 0.003
ON_MASK = 0.05


def load_clip(clip_dir: Path):
    frames, fps = read_video(clip_dir / "video.webm")
    masks = np.load(clip_dir / "masks.npz")
    hand = masks["hand"].astype(bool)
    objs = [masks[k].astype(bool) for k in masks.files if k.startswith("object_")]
    obj = np.any(np.stack(objs), axis=0) if objs else np.zeros_like(hand)
    T = min(len(frames), len(hand))
    return frames[:T], hand[:T], obj[:T], fps


def mask_frac_in_box(mask: np.ndarray, box: np.ndarray) -> float:
    H, W = mask.shape
    x0, y0 = int(np.clip(np.floor(box[0]), 0, W)), int(np.clip(np.floor(box[1]), 0, H))
    x1, y1 = int(np.clip(np.ceil(box[2]), 0, W)), int(np.clip(np.ceil(box[3]), 0, H))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    return float(mask[y0:y1, x0:x1].sum() / area) if x1 > x0 and y1 > y0 else 0.0


def cc_boxes(mask: np.ndarray) -> list[np.ndarray]:
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    min_px = MIN_AREA / 3 * mask.size
    return [np.array([s[0], s[1], s[0] + s[2], s[1] + s[3]], dtype=np.float32)
            for s in stats[1:] if s[4] >= min_px]


def union_box(boxes):
    boxes = [b for b in boxes if np.isfinite(b).all()]
    if not boxes:
        return np.full(4, np.nan)
    b = np.stack(boxes)
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])


def score_hands(clip: str, boxes: np.ndarray, hand: np.ndarray) -> dict:
    T = len(hand)
    area = hand.reshape(T, -1).mean(1)
    elig = area >= MIN_AREA
    r = dict(eligible=int(elig.sum()), hit_any=0, hit_on=0, dets=0, false=0, unverifiable=0,
             iou_union=[], iou_cc=[], on_mask_slot=[0, 0])
    for t in range(T):
        valid = [s for s in range(2) if np.isfinite(boxes[t, s]).all()]
        on = {s: mask_frac_in_box(hand[t], boxes[t, s]) >= ON_MASK for s in valid}
        r["dets"] += len(valid)
        for s in valid:
            if on[s]:
                r["on_mask_slot"][s] += 1
            elif clip in RIGHT_ONLY and s == 0:
                r["unverifiable"] += 1
            else:
                r["false"] += 1
        if elig[t]:
            r["hit_any"] += bool(valid)
            r["hit_on"] += any(on.values())
            use = [boxes[t, s] for s in valid if on[s] or clip not in RIGHT_ONLY]
            ub = union_box(use)
            r["iou_union"].append(float(box_iou(ub, box_from_mask(hand[t]))) if np.isfinite(ub).all() else 0.0)
            ccs = cc_boxes(hand[t])
            for s in valid:
                if on[s] and ccs:
                    r["iou_cc"].append(max(float(box_iou(boxes[t, s], c)) for c in ccs))
    return r


def score_objects(pred: np.ndarray, obj: np.ndarray) -> list[float]:
    out = []
    for t in range(len(obj)):
        if obj[t].any():
            ref = box_from_mask(obj[t])
            out.append(float(box_iou(pred[t], ref)) if np.isfinite(pred[t]).all() else 0.0)
    return out


def baseline_boxes(frames) -> np.ndarray:
    """Bare MediaPipe: mp.solutions.hands in video mode over the frames, default thresholds."""
    import mediapipe as mp

    from hoi_cli.conventions import box_from_points, mediapipe_label_to_slot

    T, H, W = frames.shape[:3]
    boxes = np.full((T, 2, 4), np.nan, dtype=np.float32)
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2) as hands:
        for t in range(T):
            res = hands.process(frames[t])
            for lm, hd in zip(res.multi_hand_landmarks or [], res.multi_handedness or []):
                s = mediapipe_label_to_slot(hd.classification[0].label)
                kp = np.array([[p.x * W, p.y * H] for p in lm.landmark])
                if not np.isfinite(boxes[t, s]).all():
                    boxes[t, s] = box_from_points(kp)
    return boxes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default="")
    ap.add_argument("--baseline", action="store_true", help="also score bare MediaPipe")
    ap.add_argument("--no-objects", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from hoi_cli.detect.hands import HandDetectorConfig, detect_hands
    if not args.no_objects:
        from hoi_cli.detect.objects import ObjectConfig, detect_objects, prompt_from_mask_box

    clips = sorted((p for p in DATA.iterdir() if (p / "video.webm").exists()), key=lambda p: p.name)
    if args.clips:
        keep = set(args.clips.split(","))
        clips = [c for c in clips if c.name in keep]
    rows, tot = [], {}
    print(f"{'clip':>7} {'elig':>4} {'rec_any':>7} {'rec_on':>6} {'iouU':>5} {'iouCC':>5} {'dets':>4} "
          f"{'false':>5} {'unver':>5} {'slot1':>5} {'objP':>5} {'objA':>5} {'base':>5} {'s':>5}")
    for clip_dir in clips:
        clip = clip_dir.name
        frames, hand, obj, fps = load_clip(clip_dir)
        t0 = time.perf_counter()
        det = detect_hands(frames, HandDetectorConfig())
        dt = time.perf_counter() - t0
        r = score_hands(clip, det["hand_boxes"], hand)
        if args.baseline:
            b = score_hands(clip, baseline_boxes(frames), hand)
            r["base_hit_any"] = b["hit_any"]
            r["base_hit_on"] = b["hit_on"]
        if not args.no_objects:
            vis = [t for t in range(len(obj)) if obj[t].any()]
            if vis:
                prompt = prompt_from_mask_box(obj[vis[0]], vis[0])
                pb = detect_objects(frames, det, ObjectConfig(object_box=prompt[0], object_frame=prompt[1]))
                ab = detect_objects(frames, det, ObjectConfig())
                r["obj_prompt"] = score_objects(pb["object_boxes"], obj)
                r["obj_auto"] = score_objects(ab["object_boxes"], obj)
        r["clip"], r["seconds"] = clip, dt
        rows.append(r)
        on_tot = sum(r["on_mask_slot"])
        print(f"{clip:>7} {r['eligible']:>4} {r['hit_any'] / max(r['eligible'], 1):7.2f} "
              f"{r['hit_on'] / max(r['eligible'], 1):6.2f} {np.mean(r['iou_union'] or [0]):5.2f} "
              f"{np.mean(r['iou_cc'] or [np.nan]):5.2f} {r['dets']:>4} {r['false']:>5} {r['unverifiable']:>5} "
              f"{(r['on_mask_slot'][1] / on_tot if on_tot else float('nan')):5.2f} "
              f"{np.mean(r.get('obj_prompt') or [np.nan]):5.2f} {np.mean(r.get('obj_auto') or [np.nan]):5.2f} "
              f"{(r.get('base_hit_on', -1) / max(r['eligible'], 1)):5.2f} {dt:5.1f}", flush=True)
    E = sum(r["eligible"] for r in rows)
    D = sum(r["dets"] for r in rows)
    tot = {
        "frames_eligible": E,
        "recall_any": sum(r["hit_any"] for r in rows) / max(E, 1),
        "recall_on_mask": sum(r["hit_on"] for r in rows) / max(E, 1),
        "box_iou_union_mean": float(np.mean(sum((r["iou_union"] for r in rows), []))),
        "box_iou_cc_mean": float(np.mean(sum((r["iou_cc"] for r in rows), []))),
        "detections": D,
        "false_detections": sum(r["false"] for r in rows),
        "false_rate": sum(r["false"] for r in rows) / max(D, 1),
        "unverifiable_left_in_right_only_clips": sum(r["unverifiable"] for r in rows),
        "slot1_share_on_mask_right_only_clips": (
            sum(r["on_mask_slot"][1] for r in rows if r["clip"] in RIGHT_ONLY)
            / max(sum(sum(r["on_mask_slot"]) for r in rows if r["clip"] in RIGHT_ONLY), 1)),
        "seconds": sum(r["seconds"] for r in rows),
    }
    if args.baseline:
        tot["baseline_recall_any"] = sum(r["base_hit_any"] for r in rows) / max(E, 1)
        tot["baseline_recall_on_mask"] = sum(r["base_hit_on"] for r in rows) / max(E, 1)
    if not args.no_objects:
        tot["object_iou_prompt_mean"] = float(np.mean(sum((r.get("obj_prompt", []) for r in rows), [])))
        tot["object_iou_auto_mean"] = float(np.mean(sum((r.get("obj_auto", []) for r in rows), [])))
        tot["object_iou_prompt_ge_0.5"] = float(np.mean(np.array(sum((r.get("obj_prompt", []) for r in rows), [])) >= 0.5))
        tot["object_iou_auto_ge_0.5"] = float(np.mean(np.array(sum((r.get("obj_auto", []) for r in rows), [])) >= 0.5))
    print(json.dumps(tot, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
