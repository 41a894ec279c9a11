"""Hand recall and false-hand rate of 01_detect's hand detector, tuning and validation split
side by side (issue 12), automatic and prompted, with a per-cause table of the misses.

Splits:
    tuning     the 12 InterDyn clips (``interdyn/*/video.webm``, SAM2 ``hand`` masks; in 243 and
               35671 only the right hand is masked, so there a slot-0 box off the mask is
               "unverifiable": it may hit, it is never false);
    validation ``something_else/*`` (JPG frame folders, 12 fps, human hand boxes; 3201 has none,
               57082 only 3) and ``wild/handtrack_twohands`` (colour-coded SAM2 hand masks,
               green / red, thresholded).
Definitions: `hoi_cli.metrics.hand_recall` (a frame counts with a reference box or a mask
covering >= 0.3% of the image; hit: IoU >= 0.3 or covering >= 50% of the reference box; false:
covering < 10% of every reference hand and < 10% of its own area on one). InterDyn's ``hand``
mask holds both hands in one mask: it is split into hands by connected components of the mask
dilated by 2% of the image diagonal, largest two kept (each >= 0.3% of the image).

Frames are decoded at 00_frames' working resolution (``working_size(W, H, 512)``) and given
to ``hoi_cli.detect.hands.detect_hands`` directly. Modes:
    auto      no prompts;
    prompted  one reference box per visible hand on its first visible frame (InterDyn: the
              hands of the first counted frame; if it has one and a later frame has two, the
              other from the first such frame, the one farther from the first prompt).

Causes of misses (per reference hand, automatic heuristics, several may apply):
    edge   reference box within 2 px of the image border (cut by the frame edge);
    small  reference box area < 1% of the image;
    dark   mean luma (BT.601) inside the reference box < 70;
    blur   variance of the Laplacian inside the box < 0.5 x the clip's median over its boxes;
    side / back  the landmark model run on the reference crop (best of rotations and mirror)
           finds the hand (presence >= 0.5) and its palm normal (world landmarks: wrist, index
           and pinky bases) is edge-on (|cos| to the camera axis < 0.4: side) or points away
           from the camera (back); "unseen" when the model finds no hand in the reference crop.

Also printed: the fraction of detected boxes that carry keypoints (not box-only).
Detections are cached per variant under /tmp/h12_measure_hands/ (``--cache DIR`` elsewhere, e.g.
one folder per code version; ``--fresh`` recomputes).

Usage: python bench/measure_hands.py [--variants baseline,default] [--modes auto,prompted]
       [--clips 243,2] [--causes] [--fresh] [--cache DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hoi_cli.metrics.hand_recall import MIN_MASK_FRACTION, RecallCounts, hand_recall, mask_box  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CACHE = Path("/tmp/h12_measure_hands")
RIGHT_ONLY = {"243", "35671"}
MAX_SIDE = 512  # 00_frames' default working resolution


@dataclasses.dataclass
class Clip:
    name: str
    split: str
    frames: np.ndarray  # (T,H,W,3) uint8 RGB, working resolution
    refs: list  # per frame: list of reference boxes
    masks: list | None  # per frame: list of masks per reference hand (or None)
    ids: list  # per frame: list of hand identities (for the prompts)


def _decode(path: Path) -> np.ndarray:
    from hoi_cli.video import iter_frames, probe, working_size

    info = probe(path)
    size = working_size(info.width, info.height, MAX_SIDE)
    return np.stack([rgb for _, _, rgb in iter_frames(path, size=size)])


def split_hand_mask(mask: np.ndarray) -> list[np.ndarray]:
    """One merged mask of (up to) two hands -> per-hand masks (see the module docstring)."""
    import cv2

    H, W = mask.shape
    r = max(1, int(round(0.02 * np.hypot(H, W))))
    grown = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    n, lab = cv2.connectedComponents(grown, connectivity=8)
    parts = [mask & (lab == i) for i in range(1, n)]
    parts = [p for p in parts if p.mean() >= MIN_MASK_FRACTION]
    parts.sort(key=lambda p: -p.sum())
    return sorted(parts[:2], key=lambda p: np.nonzero(p)[1].mean())


def load_interdyn() -> list[Clip]:
    out = []
    for d in sorted((DATA / "interdyn").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0):
        if not (d / "video.webm").exists():
            continue
        frames = _decode(d / "video.webm")
        hand = np.load(d / "masks.npz")["hand"].astype(bool)
        T = min(len(frames), len(hand))
        refs, masks, ids = [], [], []
        for t in range(T):
            parts = split_hand_mask(hand[t])
            refs.append([mask_box(p) for p in parts])
            masks.append(parts)
            ids.append([None] * len(parts))
        out.append(Clip(d.name, "tuning", frames[:T], refs, masks, ids))
    return out


def load_something_else() -> list[Clip]:
    import cv2

    root = DATA / "something_else"
    ann = json.loads((root / "annotations.json").read_text())
    out = []
    for name in sorted(ann, key=int):
        files = sorted((root / name).glob("*.jpg"))
        frames = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])
        H, W = frames.shape[1:3]
        by_name = {e["name"].split("/")[-1]: e for e in ann[name]}
        refs, ids = [], []
        for f in files:
            e = by_name.get(f.name, {"labels": []})
            bs = [l["box2d"] for l in e["labels"] if l["category"] == "hand"]
            refs.append([np.clip(np.array([b["x1"], b["y1"], b["x2"], b["y2"]], float), 0, [W, H, W, H]) for b in bs])
            ids.append(list(range(len(bs))))
        out.append(Clip(name, "validation", frames, refs, None, ids))
    return out


def handtrack_hands(colours: np.ndarray) -> dict[str, np.ndarray]:
    """The two hands of handtrack_twohands' colour-coded mask video (RGB ``(..., 3)``, lossy): ``{"green": bool
    mask, "red": bool mask}``, thresholded."""
    c = colours.astype(np.int16)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    return {"green": (g > 128) & (r < 100) & (b < 100), "red": (r > 128) & (g < 100) & (b < 100)}


def load_handtrack() -> list[Clip]:
    path = DATA / "wild" / "handtrack_twohands.mp4"
    if not path.exists():
        return []
    frames = _decode(path)
    colours = _decode(DATA / "wild" / "handtrack_twohands.hand_masks.mp4").astype(np.int16)
    T = min(len(frames), len(colours))
    refs, masks, ids = [], [], []
    for t in range(T):
        hands = handtrack_hands(colours[t])
        rb, mb, ib = [], [], []
        for k, m in hands.items():
            if m.mean() >= MIN_MASK_FRACTION:
                rb.append(mask_box(m))
                mb.append(m)
                ib.append(k)
        refs.append(rb)
        masks.append(mb)
        ids.append(ib)
    return [Clip("handtrack_twohands", "validation", frames[:T], refs, masks, ids)]


def prompts_for(clip: Clip) -> list[tuple[int, tuple[float, float, float, float]]]:
    """One reference box per visible hand, on its first visible frame (see the docstring)."""
    out, seen = [], set()
    if any(i is not None for ids in clip.ids for i in ids):
        for t, (boxes, ids) in enumerate(zip(clip.refs, clip.ids)):
            for b, i in zip(boxes, ids):
                if i not in seen and len(out) < 2:
                    seen.add(i)
                    out.append((t, tuple(float(v) for v in b)))
        return out
    counted = [t for t in range(len(clip.refs)) if clip.refs[t]]
    if not counted:
        return []
    t0 = counted[0]
    out = [(t0, tuple(float(v) for v in b)) for b in clip.refs[t0][:2]]
    if len(out) == 1:
        for t in counted:
            if len(clip.refs[t]) >= 2:
                c0 = np.array(out[0][1]).reshape(2, 2).mean(0)
                far = max(clip.refs[t], key=lambda b: np.hypot(*(b.reshape(2, 2).mean(0) - c0)))
                out.append((t, tuple(float(v) for v in far)))
                break
    return out


VARIANTS = {
    # today's detector (HEAD before issue 12): no box tracking
    "baseline": dict(track_boxes=False),
    "default": dict(),
}


def run_detector(clip: Clip, variant: str, mode: str, fresh: bool = False) -> dict:
    from hoi_cli.detect.hands import HandDetectorConfig, detect_hands

    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"{variant}_{mode}_{clip.split}_{clip.name}.npz"
    if f.exists() and not fresh:
        return dict(np.load(f))
    cfg = HandDetectorConfig(**VARIANTS[variant])
    prompts = prompts_for(clip) if mode == "prompted" else None
    t0 = time.perf_counter()
    try:
        out = detect_hands(clip.frames, cfg, hand_prompts=prompts)
    except TypeError:  # a detector without prompts (baseline code)
        if prompts:
            raise
        out = detect_hands(clip.frames, cfg)
    dt = time.perf_counter() - t0
    res = {"hand_boxes": out["hand_boxes"], "hand_keypoints": out["hand_keypoints"],
           "hand_box_only": out.get("hand_box_only", np.zeros(out["hand_boxes"].shape[:2], bool)),
           "seconds": np.float64(dt)}
    np.savez(f, **res)
    return res


def score(clip: Clip, det: dict) -> tuple[RecallCounts, int, int]:
    boxes = det["hand_boxes"]
    T = len(clip.refs)
    dets = [[boxes[t, s] for s in range(2)] for t in range(T)]
    unv = None
    if clip.name in RIGHT_ONLY and clip.split == "tuning":
        from hoi_cli.metrics.hand_recall import score_frame

        unv = []
        for t in range(T):
            flags = [False, False]
            if np.isfinite(boxes[t, 0]).all() and clip.refs[t]:
                off = score_frame(clip.refs[t], [boxes[t, 0]], clip.masks[t]).false[0]
                flags[0] = off  # an off-mask left hand: likely the real, unmasked left hand
            unv.append(flags)
    c = hand_recall(clip.refs, dets, clip.masks, unv)
    counted = np.array([bool(r) for r in clip.refs])
    have = np.isfinite(boxes).all(-1) & counted[:, None]
    with_kp = have & ~det["hand_box_only"].astype(bool)
    # boxes in frames without a reference hand (not in the metric; where the references are
    # incomplete, 3201 and 57082, and the unmasked left hands of 243/35671, not all are false)
    c.outside = int((np.isfinite(boxes).all(-1) & ~counted[:, None]).sum())
    return c, int(have.sum()), int(with_kp.sum())


# ----------------------------------------------------------------- causes of misses
CAUSES = ("edge", "small", "dark", "blur", "side", "back", "unseen")


def hand_view(frame: np.ndarray, box: np.ndarray, model) -> str:
    """palm / side / back / unseen: the landmark model on the reference crop (docstring)."""
    from hoi_cli.detect.hands import HandDetectorConfig, redetect_in_crop

    cfg = HandDetectorConfig(crop_scale=1.5)
    d = redetect_in_crop(frame, box, model, cfg, return_best=True)
    if d is None or d.score < 0.5:
        return "unseen"
    w = d.world
    n = np.cross(w[5] - w[0], w[17] - w[0])  # index base x pinky base, from the wrist
    n /= max(np.linalg.norm(n), 1e-9)
    if abs(n[2]) < 0.4:
        return "side"
    # sign checked by eye on handtrack_twohands crops (frames 0, 120, 200: an open palm and
    # the back of a pointing hand): for a right hand the palm faces the camera when n_z < 0
    # (world axes x right, y down, z into the scene); a left hand is the mirror image
    right = d.p_right > 0.5
    palm = (n[2] < 0) == right
    return "palm" if palm else "back"


def causes_of(clip: Clip, model) -> list[list[set]]:
    import cv2

    H, W = clip.frames.shape[1:3]
    lap = []
    for t, boxes in enumerate(clip.refs):
        gray = cv2.cvtColor(clip.frames[t], cv2.COLOR_RGB2GRAY)
        row = []
        for b in boxes:
            x0, y0, x1, y1 = [int(round(v)) for v in b]
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
            patch = gray[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            row.append((float(cv2.Laplacian(patch, cv2.CV_64F).var()) if patch.size > 9 else 0.0,
                        float(patch.mean()) if patch.size else 0.0))
        lap.append(row)
    allvar = [v for row in lap for v, _ in row]
    med = float(np.median(allvar)) if allvar else 0.0
    out = []
    for t, boxes in enumerate(clip.refs):
        row = []
        for k, b in enumerate(boxes):
            c = set()
            if b[0] <= 2 or b[1] <= 2 or b[2] >= W - 2 or b[3] >= H - 2:
                c.add("edge")
            if (b[2] - b[0]) * (b[3] - b[1]) < 0.01 * W * H:
                c.add("small")
            var, luma = lap[t][k]
            if luma < 70:
                c.add("dark")
            if var < 0.5 * med:
                c.add("blur")
            view = hand_view(clip.frames[t], np.asarray(b, float), model)
            if view != "palm":
                c.add(view)
            row.append(c)
        out.append(row)
    return out


def speed() -> int:
    """Frames/s of bare MediaPipe (video mode, default settings), the detector as it was
    (``baseline``) and as it is (``default``, automatic), on one tuning and one validation
    clip, timed in the same process (decoding excluded)."""
    import mediapipe as mp

    from hoi_cli.detect.hands import HandDetectorConfig, detect_hands

    clips = [c for c in load_interdyn() if c.name == "33576"] + [c for c in load_something_else() if c.name == "22983"]
    for clip in clips:
        t0 = time.perf_counter()
        with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2) as hands:
            for f in clip.frames:
                hands.process(f)
        times = {"bare": time.perf_counter() - t0}
        for v in ("baseline", "default"):
            t0 = time.perf_counter()
            detect_hands(clip.frames, HandDetectorConfig(**VARIANTS[v]))
            times[v] = time.perf_counter() - t0
        T = len(clip.frames)
        print(f"{clip.split:<10} {clip.name:<8} {T} frames {clip.frames.shape[2]}x{clip.frames.shape[1]}: "
              + ", ".join(f"{k} {T / t:.2f} fps" for k, t in times.items())
              + f"; default/baseline time {times['default'] / times['baseline']:.2f}x, "
              f"default/bare {times['default'] / times['bare']:.1f}x", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="baseline,default")
    ap.add_argument("--modes", default="auto,prompted")
    ap.add_argument("--clips", default="")
    ap.add_argument("--causes", action="store_true", help="print the per-cause table")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--cache", default=str(CACHE), help=f"folder of cached detections (default {CACHE})")
    ap.add_argument("--json", default="")
    ap.add_argument("--speed", action="store_true",
                    help="only time bare MediaPipe, baseline and default (auto) on 33576 and 22983, same run")
    args = ap.parse_args(argv)
    globals()["CACHE"] = Path(args.cache)
    if args.speed:
        return speed()
    want = set(filter(None, args.clips.split(",")))
    clips = load_interdyn() + load_something_else() + load_handtrack()
    clips = [c for c in clips if not want or c.name in want]
    variants = args.variants.split(",")
    modes = args.modes.split(",")
    cols = [(v, m) for v in variants for m in modes if not (v == "baseline" and m == "prompted")]
    totals = {(sp, v, m): RecallCounts() for sp in ("tuning", "validation") for v, m in cols}
    kp_tot = {k: [0, 0] for k in totals}
    outside = {k: 0 for k in totals}
    secs = {k: [0.0, 0] for k in totals}
    rows, per_clip_hits = [], {}
    head = f"{'split':<10} {'clip':<20} {'refs':>4} " + " ".join(f"{v + '/' + m:>22}" for v, m in cols)
    print("recall % / false % (detected boxes) per clip", flush=True)
    print(head)
    for clip in clips:
        cells, row = [], {"clip": clip.name, "split": clip.split}
        for v, m in cols:
            if m == "prompted" and not prompts_for(clip):
                cells.append(f"{'-':>22}")
                continue
            det = run_detector(clip, v, m, args.fresh)
            c, n_box, n_kp = score(clip, det)
            key = (clip.split, v, m)
            totals[key] = totals[key].add(c)
            kp_tot[key][0] += n_box
            kp_tot[key][1] += n_kp
            outside[key] += c.outside
            secs[key][0] += float(det["seconds"])
            secs[key][1] += len(clip.frames)
            per_clip_hits[(clip.name, v, m)] = c.hit_flags
            row[f"{v}/{m}"] = {"recall": c.recall, "false": c.false_rate, "refs": c.refs, "hits": c.hits,
                               "dets": c.dets, "n_false": c.false, "boxes": n_box, "with_keypoints": n_kp}
            cells.append(f"{100 * c.recall:>13.1f} / {100 * c.false_rate:>4.1f}")
        refs = sum(len(r) for r in clip.refs)
        print(f"{clip.split:<10} {clip.name:<20} {refs:>4} " + " ".join(cells), flush=True)
        rows.append(row)
    print()
    for sp in ("tuning", "validation"):
        cells = []
        for v, m in cols:
            c = totals[(sp, v, m)]
            cells.append(f"{100 * c.recall:>13.1f} / {100 * c.false_rate:>4.1f}")
        print(f"{sp:<10} {'ALL':<20} {totals[(sp, cols[0][0], cols[0][1])].refs:>4} " + " ".join(cells))
    # validation by source: the boxed Something-Else clips and the masked handtrack clip
    for label, names in (("something_else", lambda n: n != "handtrack_twohands"),
                         ("handtrack", lambda n: n == "handtrack_twohands")):
        cells, n_refs = [], 0
        for v, m in cols:
            c = RecallCounts()
            for row in rows:
                if row["split"] == "validation" and names(row["clip"]) and f"{v}/{m}" in row:
                    r = row[f"{v}/{m}"]
                    c = c.add(RecallCounts(0, r["refs"], r["hits"], r["dets"], r["n_false"]))
            n_refs = max(n_refs, c.refs)
            cells.append(f"{100 * c.recall:>13.1f} / {100 * c.false_rate:>4.1f}")
        print(f"{'validation':<10} {label:<20} {n_refs:>4} " + " ".join(cells))
    print("\nboxes in frames without a reference hand (not in the metric)")
    for sp in ("tuning", "validation"):
        print(f"{sp:<10} {'':<20} {'':>4} " + " ".join(f"{outside[(sp, v, m)]:>22}" for v, m in cols))
    print("\nboxes with keypoints / detected boxes in counted frames; detector frames/s")
    for sp in ("tuning", "validation"):
        cells = []
        for v, m in cols:
            b, k = kp_tot[(sp, v, m)]
            s, n = secs[(sp, v, m)]
            cells.append(f"{k:>5}/{b:<5} {n / max(s, 1e-9):5.1f}fps")
        print(f"{sp:<10} {'':<20} {'':>4} " + " ".join(f"{c:>22}" for c in cells))
    summary = {"rows": rows, "totals": {f"{sp}/{v}/{m}": {"recall": c.recall, "false": c.false_rate, "refs": c.refs}
                                         for (sp, v, m), c in totals.items()}}
    if args.causes:
        from hoi_cli.detect.hands import LandmarkModel

        model = LandmarkModel(1)
        print("\nper-cause recall (reference hands with the cause: recall % per column; misses with it)")
        table = {(sp, cause): {k: [0, 0] for k in cols} for sp in ("tuning", "validation") for cause in CAUSES + ("none",)}
        for clip in clips:
            cs = causes_of(clip, model)
            for v, m in cols:
                for t, k, hit in per_clip_hits.get((clip.name, v, m), []):
                    for cause in (cs[t][k] or {"none"}):
                        cell = table[(clip.split, cause)][(v, m)]
                        cell[0] += 1
                        cell[1] += hit
        print(f"{'split':<10} {'cause':<8} {'n':>5} " + " ".join(f"{v + '/' + m:>22}" for v, m in cols))
        for sp in ("tuning", "validation"):
            for cause in CAUSES + ("none",):
                cells = table[(sp, cause)]
                n = cells[cols[0]][0]
                if not n:
                    continue
                print(f"{sp:<10} {cause:<8} {n:>5} " + " ".join(
                    f"{100 * cells[k][1] / max(cells[k][0], 1):>11.1f} ({cells[k][0] - cells[k][1]:>3} miss)" for k in cols))
        summary["causes"] = {f"{sp}/{c}": {f"{v}/{m}": x for (v, m), x in cells.items()} for (sp, c), cells in table.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
