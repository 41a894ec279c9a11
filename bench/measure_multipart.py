"""Automatic object mask of a multi-coloured object: the AnchorCrafter plush toy against its labelled mask.

The clip (../shared/data/anchorcrafter/eval_example/gt.mp4, 17 frames, 720x1280) shows a plush toy with
a yellow head, a brown body, a red tie and yellow feet, held with both hands; ``gt_object_mask.mp4``
is its object mask (white = object). With no prompt, 01_detect proposes the object (auto mode,
`hoi_cli.detect.objects`) and 03_segment cuts it (`hoi_cli.stages.segment.segment_clip`).

The run folder is made through ``hoi preprocess --until 02_hands`` on first use (frames, hands);
01_detect's automatic object step and 03_segment then run here, in-process, with this checkout's
code and default params (so a changed object step is measured without a stage version bump).
The reference mask is resized (nearest) to the run's size and thresholded at 127
(`hoi_cli.metrics.objects.load_masks`).

Prints: mask IoU (mean over frames with a reference object), box IoU (03_segment's object box
against the reference mask's tight box), the share of reference-object pixels left unmasked (all
frames together), and frames/s of the object step and of 03_segment.

Usage: python bench/measure_multipart.py [--runs /tmp/runs_multipart] [--json]
Skips (exit 0, a message naming the folder) where ../shared/data is absent.
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

SHARED = REPO.parent / "shared" / "data"
CLIP = SHARED / "anchorcrafter" / "eval_example"


def build_run(runs: Path) -> Path:
    from measure_objects import preprocess_run

    return preprocess_run(runs, CLIP / "gt.mp4", "gt")


def measure(runs: Path) -> dict:
    from hoi_cli.detect.objects import ObjectConfig, detect_objects
    from hoi_cli.metrics.objects import load_masks
    from hoi_cli.stages import segment as seg
    from hoi_cli.stages.detect import load_detections
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stages.hands import load_mano
    from measure_segment import box_iou_mean, iou_mean

    run = build_run(runs)
    frames = load_frames(run)
    det = load_detections(run)
    mano = load_mano(run) if (run / "02_hands" / "mano.npz").exists() else None
    H, W = frames[0].shape[:2]
    ref = load_masks(CLIP / "gt_object_mask.mp4", size=(W, H))
    T = min(len(frames), len(ref))
    frames, ref = frames[:T], ref[:T]
    det = {k: (v[:T] if hasattr(v, "shape") and v.ndim and v.shape[0] >= T else v) for k, v in det.items()}
    det.pop("object_seed", None)
    t0 = time.perf_counter()
    det.update(detect_objects(frames, det, ObjectConfig()))
    t1 = time.perf_counter()
    res = seg.segment_clip(frames, det, mano, seg.Params())
    t2 = time.perf_counter()
    pred = res["object"][:T].astype(bool)
    return {"frames": T, "size": [W, H],
            "mask_iou": iou_mean(pred, ref), "box_iou": box_iou_mean(np.asarray(res["object_boxes"][:T]), ref),
            "unmasked_share": float((ref & ~pred).sum() / max(int(ref.sum()), 1)),
            "object_step_fps": T / (t1 - t0), "segment_fps": T / (t2 - t1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("/tmp/runs_multipart"), help="folder for the run folder")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not (CLIP / "gt.mp4").exists() or not (CLIP / "gt_object_mask.mp4").exists():
        print(f"skipped: {CLIP} is absent (the shared test data beside the checkout, ../shared/data)")
        return 0
    out = measure(a.runs)
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"AnchorCrafter gt.mp4 ({out['frames']} frames, {out['size'][0]}x{out['size'][1]}), auto mode:")
        print(f"  mask IoU {out['mask_iou']:.3f}  box IoU {out['box_iou']:.3f}  "
              f"reference object left unmasked {out['unmasked_share']:.3f}")
        print(f"  01_detect object step {out['object_step_fps']:.1f} frames/s, 03_segment {out['segment_fps']:.1f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
