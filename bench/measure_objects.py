"""Object masks and boxes from one prompt (and automatically), tuning and validation splits side by side.

Splits (fixed; tune only on ``tune``):

- ``tune``: InterDyn 125021, 137875, 141667, 176110, 182974, 191021;
- ``val``: InterDyn 204076, 208810, 243, 24815, 33576, 35671;
- ``se``: ../shared/data/something_else (6 JPG-folder clips with human-drawn boxes; validation only).

Modes:

- ``prompt``: 01_detect's object prompt = the reference's box on its first frame with the object
  (InterDyn: the reference mask's tight box, one prompt per ``object_<name>`` key, measured against
  that object alone - 125021 has a cup and a tape roll, a user prompts one object at a time; something_else:
  the object's first human box), then 03_segment (`segment_clip`, default params = mask propagation,
  `hoi_cli.segment.propagate`).
- ``boxtrack``: the same prompt through the previous path (01_detect's CSRT box track + per-frame
  GrabCut in the box, ``prompt_propagate=False``): the peer for accuracy and speed, in the same run.
- ``auto``: no prompt: 01_detect's automatic boxes (as in the run folder) + 03_segment; InterDyn is
  measured against the union of the object keys (as `bench/measure_segment.py`), something_else
  against each object's boxes.

Per clip (and object): mask IoU (InterDyn; mean over frames with a reference object, an empty
prediction counts 0), box IoU of 03_segment's object box (the mask's tight box; with a prompt,
carried through the mask's losses by the box track: `boxes_through_losses`) (InterDyn: against the reference mask's box;
something_else: against the human box, over frames that have one; a missing box counts 0) and
frames/s of 03_segment's work (hand masks + object masks; ``prompt``/``boxtrack`` also time the
prompted 01_detect object step, which is CSRT tracking in both).

Inputs: run folders with 00_frames..02_hands under ``--runs`` (made on first use: InterDyn through
``hoi preprocess --until 02_hands``; something_else frames decoded from the JPGs into a 00_frames
folder, then the real 01_detect and 02_hands stages).

Usage: python bench/measure_objects.py --runs /tmp/runs [--splits tune,val,se] [--modes prompt,boxtrack,auto]
       [--clips 243,2] [--prop-set band_frac=0.1] [--obj-set w_area=0.4] [--overlays /tmp/ov] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from hoi_cli.conventions import box_from_mask, box_iou  # noqa: E402
from hoi_cli.stages import segment as seg  # noqa: E402
from hoi_cli.stages.base import params_from_dict  # noqa: E402
from measure_segment import iou_mean  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SPLITS = {"tune": ["125021", "137875", "141667", "176110", "182974", "191021"],
          "val": ["204076", "208810", "243", "24815", "33576", "35671"]}


# ------------------------------------------------------------------ run folders
def preprocess_run(runs: Path, source: Path, run_id: str, until: str = "02_hands") -> Path:
    """``runs/run_id`` through ``until``, made or brought up to date by `hoi preprocess`: a stage whose code or
    inputs changed since the run was made is recomputed (a stale 01_detect would measure the automatic mode
    of an older revision), the rest reused."""
    subprocess.run([sys.executable, "-m", "hoi_cli", "preprocess", str(source), "--out", str(runs),
                    "--run-id", run_id, "--until", until, "-q"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return runs / run_id


def interdyn_run(runs: Path, clip: str) -> Path:
    return preprocess_run(runs, SHARED / "interdyn" / clip / "video.webm", clip)


@dataclass
class _JpgParams:
    folder: str = ""


def _jpg_frames_stage(folder: Path):
    """A stand-in for 00_frames that reads a JPG frame folder (12 fps) at its own size."""
    from hoi_cli.stages import frames as frames_stage
    from hoi_cli.video import read_image, write_image

    def run(ctx):
        paths = sorted(folder.glob("*.jpg"))
        (ctx.out_dir / "frames").mkdir()
        for i, p in enumerate(paths):
            write_image(ctx.out_dir / "frames" / f"{i:06d}.png", read_image(p)[..., :3])
        h, w = read_image(paths[0]).shape[:2]
        meta = {"fps": 12.0, "width": w, "height": h, "n_frames": len(paths), "timestamps": [i / 12 for i in range(len(paths))],
                "source_frame_indices": list(range(len(paths))), "source": {"path": str(folder)}}
        (ctx.out_dir / "meta.json").write_text(json.dumps(meta))
        return {"n_frames": len(paths)}

    return types.SimpleNamespace(NAME=frames_stage.NAME, VERSION="jpg", DEPENDS_ON=(), Params=_JpgParams, run=run)


def jpg_run(runs: Path, clip: str) -> Path:
    from hoi_cli.stages import detect as detect_stage
    from hoi_cli.stages import hands as hands_stage
    from hoi_cli.store import RunStore

    run = runs / f"se_{clip}"
    with RunStore(run) as s:
        # each stage reruns where its code or inputs changed since the run was made, as in `hoi preprocess`
        # (a clip without hands, 3201, goes through too: 01_detect warns, every hand array NaN)
        for stage, params in ((_jpg_frames_stage(SHARED / "something_else" / clip), _JpgParams(str(clip))),
                              (detect_stage, detect_stage.Params()), (hands_stage, hands_stage.Params())):
            if s.state(stage, params).status != "ok":
                s.run_stage(stage, params)
    return run


def load_run(run: Path):
    from hoi_cli.stages.detect import load_detections
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stages.hands import load_mano

    frames = load_frames(run)
    mano = load_mano(run) if (run / "02_hands" / "mano.npz").exists() else None
    return frames, load_detections(run), mano


# ------------------------------------------------------------------ references
def interdyn_targets(clip: str, T: int) -> list[tuple[str, np.ndarray]]:
    """(object name, (T,H,W) mask) per object key."""
    z = np.load(SHARED / "interdyn" / clip / "masks.npz")
    return [(k[len("object_"):], z[k].astype(bool)[:T]) for k in z.files if k.startswith("object_")]


def se_targets(clip: str, T: int) -> list[tuple[str, np.ndarray]]:
    """(category, (T,4) human boxes, NaN where not drawn) per object of a something_else clip."""
    ann = json.loads((SHARED / "something_else" / "annotations.json").read_text())[clip]
    out: dict[str, np.ndarray] = {}
    for e in ann:
        t = int(Path(e["name"]).stem) - 1
        for lab in e["labels"]:
            if lab["category"] == "hand" or not 0 <= t < T:
                continue
            b = lab["box2d"]
            out.setdefault(lab["category"], np.full((T, 4), np.nan))[t] = [b["x1"], b["y1"], b["x2"], b["y2"]]
    return sorted(out.items())


def mask_box_iou(pred_boxes: np.ndarray, ref_boxes: np.ndarray) -> float:
    """Mean box IoU over frames with a reference box (a missing prediction counts 0)."""
    have = np.isfinite(ref_boxes).all(axis=1)
    v = np.nan_to_num(box_iou(pred_boxes[have], ref_boxes[have]), nan=0.0)
    return float(v.mean()) if len(v) else float("nan")


# ------------------------------------------------------------------ modes
def run_prompted(frames, det, mano, params, prop, box, frame, propagate: bool):
    from hoi_cli.detect.objects import ObjectConfig, detect_objects

    t0 = time.perf_counter()
    d = {**det, **detect_objects(frames, det, ObjectConfig(object_box=tuple(float(v) for v in box), object_frame=frame))}
    d.pop("object_seed", None)
    res = seg.segment_clip(frames, d, mano, replace(params, prompt_propagate=propagate), propagate_params=prop)
    return res, time.perf_counter() - t0


def run_auto(frames, det, mano, params, objects=None):
    """``objects``: an `ObjectConfig` to redo 01_detect's automatic object step with here (on the run's
    hands), instead of reading its boxes from the run folder (its time is then included)."""
    t0 = time.perf_counter()
    if objects is not None:
        from hoi_cli.detect.objects import detect_objects

        det = {k: v for k, v in det.items() if k not in ("object_seed", "object_seed_shape")}
        det = {**det, **detect_objects(frames, det, objects)}
    res = seg.segment_clip(frames, det, mano, params)
    return res, time.perf_counter() - t0


def write_overlay(path: Path, frames, pred, ref=None, ref_boxes=None, every: int = 4, pred_boxes=None):
    """A sheet of every ``every``-th frame: prediction green (its object box cyan), reference outline/box magenta."""
    import cv2

    from hoi_cli.video import write_image

    tiles = []
    for t in range(0, len(frames), every):
        f = frames[t].copy()
        f[pred[t]] = (0.5 * f[pred[t]] + [0, 127, 0]).astype(np.uint8)
        if ref is not None and ref[t].any():
            cs, _ = cv2.findContours(ref[t].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(f, cs, -1, (255, 0, 255), 1)
        if ref_boxes is not None and np.isfinite(ref_boxes[t]).all():
            b = ref_boxes[t].astype(int)
            cv2.rectangle(f, (b[0], b[1]), (b[2] - 1, b[3] - 1), (255, 0, 255), 1)
        if pred_boxes is not None and np.isfinite(pred_boxes[t]).all():
            b = pred_boxes[t].astype(int)
            cv2.rectangle(f, (b[0], b[1]), (b[2] - 1, b[3] - 1), (0, 255, 255), 1)
        cv2.putText(f, str(t), (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        tiles.append(f)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.concatenate(rows, axis=0))


def measure(a) -> dict:
    params = params_from_dict(seg.Params, dict(s.split("=", 1) for s in a.set))
    from hoi_cli.segment.propagate import PropagateParams

    prop = params_from_dict(PropagateParams, dict(s.split("=", 1) for s in a.prop_set))
    objects = None
    if a.obj_set:
        from hoi_cli.detect.objects import ObjectConfig

        objects = params_from_dict(ObjectConfig, dict(s.split("=", 1) for s in a.obj_set))
    modes = [m for m in a.modes.split(",") if m]
    only = {c for c in a.clips.split(",") if c}
    rows = []
    for split in [s for s in a.splits.split(",") if s]:
        clips = SPLITS[split] if split in SPLITS else sorted(
            p.name for p in (SHARED / "something_else").iterdir() if p.is_dir())
        for clip in clips:
            if only and clip not in only:
                continue
            run = jpg_run(a.runs, clip) if split == "se" else interdyn_run(a.runs, clip)
            frames, det, mano = load_run(run)
            T = len(frames)
            if split == "se":
                targets = [(name, None, boxes) for name, boxes in se_targets(clip, T)]
            else:
                targets = [(name, m, np.stack([box_from_mask(x) for x in m])) for name, m in interdyn_targets(clip, T)]
                T = min(T, len(targets[0][1]))
            frames = frames[:T]
            det = {k: (v[:T] if hasattr(v, "shape") and v.ndim and v.shape[0] >= T else v) for k, v in det.items()}
            auto_res = None
            for name, ref_mask, ref_boxes in targets:
                ref_boxes = ref_boxes[:T]
                first = int(np.flatnonzero(np.isfinite(ref_boxes).all(axis=1))[0])
                row = {"split": split, "clip": clip, "object": name, "frames": T, "prompt_frame": first}
                for mode in modes:
                    if mode == "auto":
                        if auto_res is None:
                            auto_res = run_auto(frames, det, mano, params, objects)
                        res, sec = auto_res
                        if split != "se":  # InterDyn auto: against the union of the objects
                            union = np.logical_or.reduce([m[:T] for _, m, _ in targets])
                            rm, rb = union, np.stack([box_from_mask(x) for x in union])
                        else:
                            rm, rb = None, ref_boxes
                    else:
                        res, sec = run_prompted(frames, det, mano, params, prop, ref_boxes[first], first, mode == "prompt")
                        rm, rb = ref_mask, ref_boxes
                    row[mode] = {"mask_iou": iou_mean(res["object"], rm) if rm is not None else float("nan"),
                                 "box_iou": mask_box_iou(res["object_boxes"], rb), "fps": T / sec}
                    if a.overlays:
                        write_overlay(a.overlays / f"{split}_{clip}_{name}_{mode}.png".replace(" ", "_"), frames,
                                      res["object"], rm, rb if rm is None else None, pred_boxes=res["object_boxes"])
                rows.append(row)
                if not a.json:
                    print(fmt_row(row, modes), flush=True)
    return {"rows": rows, "summary": summarise(rows, modes)}


def fmt_row(row, modes) -> str:
    s = f"{row['split']:4s} {row['clip']:>7s} {row['object'][:14]:14s}"
    for m in modes:
        r = row[m]
        s += f" | {m}: mask {r['mask_iou']:.3f} box {r['box_iou']:.3f} {r['fps']:5.1f} f/s"
    return s


def summarise(rows, modes) -> dict:
    out = {}
    for split in sorted({r["split"] for r in rows}):
        rs = [r for r in rows if r["split"] == split]
        out[split] = {}
        for m in modes:
            frames = sum(r["frames"] for r in rs)
            sec = sum(r["frames"] / r[m]["fps"] for r in rs)
            out[split][m] = {"mask_iou": float(np.nanmean([r[m]["mask_iou"] for r in rs])) if split != "se" else float("nan"),
                             "box_iou": float(np.nanmean([r[m]["box_iou"] for r in rs])), "fps": frames / max(sec, 1e-9),
                             "n": len(rs)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of run folders (made where missing)")
    ap.add_argument("--splits", default="tune,val,se")
    ap.add_argument("--modes", default="prompt,boxtrack,auto")
    ap.add_argument("--clips", default="", help="only these clip ids")
    ap.add_argument("--set", action="append", default=[], help="03_segment PARAM=VALUE")
    ap.add_argument("--prop-set", action="append", default=[], help="PropagateParams KEY=VALUE")
    ap.add_argument("--obj-set", action="append", default=[],
                    help="auto mode: redo the object step here with ObjectConfig KEY=VALUE (e.g. w_area=0.4)")
    ap.add_argument("--overlays", type=Path, default=None, help="write a PNG sheet per clip, object and mode here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = measure(a)
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        modes = [m for m in a.modes.split(",") if m]
        print("MEAN (split, mode): mask IoU / box IoU / frames/s")
        for split, per in out["summary"].items():
            print(f"  {split:4s} " + "  ".join(f"{m}: {s['mask_iou']:.3f} / {s['box_iou']:.3f} / {s['fps']:.1f}"
                                             for m, s in per.items()) + f"  ({next(iter(per.values()))['n']} rows)")
        if "prompt" in modes and "boxtrack" in modes:
            for split, per in out["summary"].items():
                print(f"  {split}: speed prompt/boxtrack = {per['prompt']['fps'] / per['boxtrack']['fps']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
