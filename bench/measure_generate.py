"""Measure `hoi generate`'s composite backend on preprocessed runs of the shared clips.

Prints, per run x reference and overall:
- hand detection rate on the generated frames (MediaPipe via hoi_cli.detect.hands.detect_hands:
  share of frames with a hand in a slot that had one on the source clip) and the IoU of the
  generated clip's hand boxes against the source clip's (same detector, same slot);
- frames/s of the composite backend at the run's resolution: "render" (per-frame work only),
  "prepare+render" (layout, track, colour, per-frame), "end-to-end" (+ object removal).
With --hd VIDEO it also times the backend on the first --hd-frames frames of a 1080p clip with a
synthetic object/hand mask (no masks ship with that clip; the figure is compute, not quality).

Usage: python bench/measure_generate.py RUN [RUN ...] --references a.png,b.png [--hd clip.mp4] [--json]
Runs need 00_frames, 01_detect and 03_segment. Nothing is written into the repository.
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


def _boxes(det):
    return np.asarray(det["hand_boxes"], np.float64)


def measure_run(run: Path, ref_path: str, detect_cache: dict) -> dict:
    """Generate through `hoi_cli.generate.run.generate` (what `hoi generate` runs), then detect hands."""
    import tempfile

    from hoi_cli.conventions import box_iou
    from hoi_cli.detect.hands import detect_hands
    from hoi_cli.generate.run import generate
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.video import read_video

    frames = load_frames(run)
    T = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sidecar = generate(run, Path(tmp) / "out.mp4", reference=ref_path)
        t_total = time.perf_counter() - t0
        out, _ = read_video(Path(tmp) / "out.mp4")
    out = out[:, : frames.shape[1], : frames.shape[2]]  # the encoder pads odd sizes
    timings = sidecar.get("timings", {})
    if run not in detect_cache:
        detect_cache[run] = _boxes(detect_hands(frames))
    src = detect_cache[run]
    gen = _boxes(detect_hands(out))
    has_src, has_gen = np.isfinite(src).all(-1), np.isfinite(gen).all(-1)
    both = has_src & has_gen
    iou = box_iou(src[both], gen[both]) if both.any() else np.array([])
    render_s = timings.get("render_s", float("nan"))
    return {"run": run.name, "reference": Path(ref_path).name, "frames": T, "size": list(frames.shape[1:3]),
            "hand_rate_src": float(has_src.any(1).mean()), "hand_rate_gen": float(has_gen.any(1).mean()),
            "slot_recall": float(both.sum() / max(1, has_src.sum())),
            "hand_box_iou_mean": float(iou.mean()) if len(iou) else None,
            "hand_box_iou_median": float(np.median(iou)) if len(iou) else None,
            "fps_render": T / render_s, "fps_prepare_render": T / (render_s + timings.get("prepare_s", 0.0)),
            "fps_end_to_end": T / t_total, "remove_s": timings.get("remove_s"),
            "removal_reused": bool(timings.get("remove_s", 1.0) < 0.05)}


def measure_hd(video: str, n: int, ref_path: str) -> dict:
    from hoi_cli.generate.composite import Compositor
    from hoi_cli.generate.reference import load_reference
    from hoi_cli.video import read_video

    frames, fps = read_video(video, max_frames=n)
    T, H, W = frames.shape[:3]
    yy, xx = np.mgrid[0:H, 0:W]
    obj = np.zeros((T, H, W), bool)
    hand = np.zeros((T, H, W), bool)
    hb = np.full((T, 2, 4), np.nan, np.float32)
    for t in range(T):  # a synthetic held object (ellipse) moving slowly, two hands at its sides
        cx, cy = W / 2 + 3 * t, H * 0.55
        obj[t] = ((xx - cx) / (W * 0.18)) ** 2 + ((yy - cy) / (H * 0.12)) ** 2 <= 1
        hand[t, int(cy - 80):int(cy + 80), int(cx - W * 0.2):int(cx - W * 0.12)] = True
        hand[t, int(cy - 80):int(cy + 80), int(cx + W * 0.12):int(cx + W * 0.2)] = True
        hb[t, 0] = (cx - W * 0.2, cy - 80, cx - W * 0.12, cy + 80)
        hb[t, 1] = (cx + W * 0.12, cy - 80, cx + W * 0.2, cy + 80)
    obj &= ~hand
    ref = load_reference(ref_path)
    t0 = time.perf_counter()
    comp = Compositor(frames, obj, hand, ref, hb)
    t1 = time.perf_counter()
    for t in range(T):
        comp.render(t)
    t2 = time.perf_counter()
    return {"video": Path(video).name, "frames": T, "size": [H, W], "fps_render": T / (t2 - t1),
            "fps_prepare_render": T / (t2 - t1 + comp.timings["prepare_s"]), "fps_end_to_end": T / (t2 - t0),
            "remove_s": comp.timings["remove_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--references", required=True)
    ap.add_argument("--hd", default=None)
    ap.add_argument("--hd-frames", type=int, default=60)
    ap.add_argument("--no-detect", action="store_true", help="timings only")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows, cache = [], {}
    for run in a.runs:
        for ref in a.references.split(","):
            r = measure_run(run, ref, cache)
            rows.append(r)
            print(f"{r['run']:>14} {r['reference']:>11}  hands src {r['hand_rate_src']:.2f} gen {r['hand_rate_gen']:.2f}"
                  f"  slot recall {r['slot_recall']:.2f}  IoU mean {r['hand_box_iou_mean'] or float('nan'):.3f}"
                  f" median {r['hand_box_iou_median'] or float('nan'):.3f}  fps render {r['fps_render']:.0f}"
                  f" prep+render {r['fps_prepare_render']:.0f} end-to-end {r['fps_end_to_end']:.1f}", file=sys.stderr)
    ious = [r["hand_box_iou_mean"] for r in rows if r["hand_box_iou_mean"] is not None]
    overall = {"hand_rate_src": float(np.mean([r["hand_rate_src"] for r in rows])),
               "hand_rate_gen": float(np.mean([r["hand_rate_gen"] for r in rows])),
               "slot_recall": float(np.mean([r["slot_recall"] for r in rows])),
               "hand_box_iou_mean": float(np.mean(ious)) if ious else None,
               "fps_render_median": float(np.median([r["fps_render"] for r in rows])),
               "fps_prepare_render_median": float(np.median([r["fps_prepare_render"] for r in rows])),
               "fps_end_to_end_median": float(np.median([r["fps_end_to_end"] for r in rows]))}
    doc = {"rows": rows, "overall": overall}
    if a.hd:
        doc["hd"] = measure_hd(a.hd, a.hd_frames, a.references.split(",")[0])
    print(json.dumps(doc if a.json else {"overall": overall, "hd": doc.get("hd")}, indent=1))


if __name__ == "__main__":
    main()
