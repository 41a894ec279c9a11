"""Object removal on the InterDyn clips of ../shared/data: remnant (`hoi_cli.metrics.removal`) and speed.

Two measurements per clip, both scored against the reference (SAM2) masks:

- ``a`` (the fill alone): the removal mask is the reference object mask (all ``object_*`` masks
  merged), removed by 07_genhoi's `object_removal` with the reference hand as the hands;
- ``b`` (the real figure): the pipeline's own masks, from ``RUNS/<clip>/03_segment`` (made with
  ``hoi preprocess CLIP --until 03_segment --object-box <reference box on its first frame>
  --object-frame <that frame>``), exactly what 07_genhoi removes; for a run only through 02_hands
  (bench/measure_objects.py's) the same prompt is run here (`prompted_masks`).

Each is run with the current `hoi_cli.inpaint.remove_object` and, with ``--peer REV``, with the
one at git revision REV of this repository (the old removal, with its own `removal_masks` where it
has one) in the same process, for the speed ratio and the before/after figures. Besides the
remnant: ``obj-fill`` (`object_coloured_fill`: filled pixels in the object's colours, what the
remnant cannot see), ``missed`` (the scored pixels the removal mask left out) and the hand erased. Tuning clips and validation clips are printed side by
side; a split's figure is the mean over its clips.

With ``--sample [RUN]`` it also scores the bundled sample clip against the true masks its
generator renders (`hoi_cli.sample.render_sample_masks`): (a) those masks removed, (b) the masks
of RUN (a run of the sample through 03_segment, e.g. ``hoi demo``'s runs/demo/hands_box).

Usage: python bench/measure_removal.py [--runs /tmp/runs] [--modes a,b] [--peer c7649e2]
       [--clips 243,35671] [--sample [RUN]] [--save DIR] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "interdyn"
TUNE = ("125021", "137875", "141667", "176110", "182974", "191021")
VALIDATE = ("204076", "208810", "243", "24815", "33576", "35671")
TABLE_COLUMNS = ("remnant", "peer_remnant", "object_fill", "peer_object_fill", "missed_by_mask")


def load_peer(rev: str):
    """`hoi_cli.inpaint` as it was at git revision ``rev`` (imported from a temporary file)."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:hoi_cli/inpaint.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "inpaint_peer.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("inpaint_peer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_masks(clip: str, T: int):
    m = np.load(DATA / clip / "masks.npz")
    obj = np.any(np.stack([m[k].astype(bool) for k in m.files if k.startswith("object_")]), axis=0)
    return obj[:T], m["hand"].astype(bool)[:T]


def prompted_masks(run: Path, ref_obj: np.ndarray) -> dict:
    """03_segment's masks for a run through 02_hands (as bench/measure_objects.py makes them), prompted
    as a user would: the reference objects' box on their first frame (01_detect's object step, then
    `segment_clip` with the default params: what ``hoi preprocess --object-box B --object-frame F``
    stores). Cached next to the run as ``prompted_masks-<key>.npz``, ``<key>`` a digest of the code that
    makes them (`hoi_cli.stagecode.module_digests` of 03_segment and 01_detect's object step), of the
    run's 00..02 outputs (their manifests' ``output_digest``) and of the prompt: another revision of
    that code, a peer checkout reading the same runs, or a re-made run makes its own."""
    from hoi_cli.conventions import box_from_mask
    from hoi_cli.detect.objects import ObjectConfig, detect_objects
    from hoi_cli.stages import segment as seg
    from hoi_cli.stages.detect import load_detections
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stagecode import module_digests
    from hoi_cli.stages.hands import load_mano

    t = int(np.flatnonzero(ref_obj.reshape(len(ref_obj), -1).any(1))[0])
    box = tuple(float(v) for v in box_from_mask(ref_obj[t]))
    key = {**module_digests("hoi_cli.stages.segment"), **module_digests("hoi_cli.detect.objects"), "prompt": [box, t]}
    for stage in ("00_frames", "01_detect", "02_hands"):
        manifest = run / stage / "manifest.json"
        key[stage] = json.loads(manifest.read_text()).get("output_digest") if manifest.exists() else None
    cache = run / f"prompted_masks-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {"object": z["object"], "hand": z["hand"]}
    frames, det = load_frames(run), load_detections(run)
    mano = load_mano(run) if (run / "02_hands" / "mano.npz").exists() else None
    prompt = ObjectConfig(object_box=box, object_frame=t)
    det = {**det, **detect_objects(frames, det, prompt)}
    det.pop("object_seed", None)
    res = seg.segment_clip(frames, det, mano, seg.Params())
    tmp = cache.with_name(f".{cache.stem}-{os.getpid()}.npz")  # whole or not at all: two benches may share runs
    np.savez_compressed(tmp, object=res["object"], hand=res["hand"])
    os.replace(tmp, cache)
    return {"object": res["object"], "hand": res["hand"]}


def clip_inputs(clip: str, mode: str, runs: Path | None):
    """``(frames, object mask to remove, hands to keep, reference object, reference hand)``."""
    from hoi_cli.video import read_video

    if mode == "a":
        frames, _ = read_video(DATA / clip / "video.webm")
        ref_obj, ref_hand = reference_masks(clip, len(frames))
        return frames, ref_obj, ref_hand, ref_obj, ref_hand
    from hoi_cli.stages.frames import load_frames
    from hoi_cli.stages.segment import load_masks

    run = runs / clip
    frames = load_frames(run)
    ref_obj, ref_hand = reference_masks(clip, len(frames))
    # a run through 03_segment, or one through 02_hands that is prompted here
    masks = load_masks(run) if (run / "03_segment" / "masks.npz").exists() else prompted_masks(run, ref_obj)
    if ref_obj.shape != frames.shape[:3]:
        raise SystemExit(f"{clip}: run frames {frames.shape[:3]} differ from the reference masks {ref_obj.shape}")
    return frames, masks["object"], masks["hand"], ref_obj, ref_hand


def peer_removal(peer, frames: np.ndarray, obj: np.ndarray, hand: np.ndarray, dilate: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The old revision's removal of ``obj`` and the mask it removed: its own `removal_masks` where
    it has one, else the old 07_genhoi mask (the object mask dilated by ``dilate``)."""
    if hasattr(peer, "removal_masks"):
        remove, keep = peer.removal_masks(frames, obj, hand, dilate)
        return peer.remove_object(frames, remove, keep_masks=keep), remove & ~keep
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1,) * 2)
    remove = np.stack([cv2.dilate(m.astype(np.uint8), k) > 0 for m in obj])
    return peer.remove_object(frames, remove, keep_masks=hand), remove & ~np.asarray(hand, bool)


def object_coloured_fill(out: np.ndarray, frames: np.ndarray, remove: np.ndarray, ref_obj: np.ndarray,
                         ref_hand: np.ndarray, ratio: float = 8.0, bins: int = 16) -> float:
    """The share of the scored pixels (`remnant_region`) inside the removal mask whose filled colour
    is ``ratio`` x likelier under the reference object's RGB histogram than under that of the pixels
    far (7 px) from the reference object and hand: the object copied back from a frame where its mask
    missed it, or smeared in by the inpainting. The remnant cannot see these (they differ from the
    source pixel). A proxy: background in the object's colours counts too."""
    import cv2

    from hoi_cli.inpaint import _colour_index, _colour_model
    from hoi_cli.metrics.removal import remnant_region

    idx = _colour_index(frames, bins)
    near = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0 for m in ref_obj | ref_hand])
    obj_like = _colour_model(idx[ref_obj & ~ref_hand], bins) > ratio * _colour_model(idx[~near], bins)
    region = np.stack([remnant_region(o, h) for o, h in zip(ref_obj, ref_hand)]) & remove
    return float(obj_like[_colour_index(out, bins)[region]].mean()) if region.any() else float("nan")


def measure(clip: str, mode: str, runs: Path | None, peer, save: Path | None = None) -> dict:
    from hoi_cli.metrics.removal import remnant_region, removal_remnant
    from hoi_cli.stages.genhoi import Params, object_removal

    frames, obj, hand, ref_obj, ref_hand = clip_inputs(clip, mode, runs)
    dilate = Params().dilate_px
    t0 = time.perf_counter()
    out, remove = object_removal(frames, obj, hand, dilate)  # exactly what 07_genhoi stores
    t_new = time.perf_counter() - t0
    row = {"clip": clip, "mode": mode, "remnant": removal_remnant(out, frames, ref_obj, ref_hand)["remnant"],
           "object_fill": object_coloured_fill(out, frames, remove, ref_obj, ref_hand), "seconds": t_new}
    # where the survivors are: outside the removal mask (the mask missed them) or filled back
    region = np.stack([remnant_region(o, h) for o, h in zip(ref_obj, ref_hand)])
    big = ref_obj.reshape(len(ref_obj), -1).mean(1) >= 0.003
    region &= big[:, None, None]
    row["missed_by_mask"] = float((region & ~remove).sum() / max(1, region.sum()))
    # "never erase a hand": the reference hand, less a 2-px rim, that the removal mask takes
    import cv2

    hand_core = np.stack([cv2.erode(h.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for h in ref_hand])
    row["hand_erased"] = float((remove & hand_core).sum() / max(1, hand_core.sum()))
    old = None
    if peer is not None:
        t0 = time.perf_counter()
        old, old_remove = peer_removal(peer, frames, obj, hand, dilate)
        row["peer_seconds"] = time.perf_counter() - t0
        row["peer_remnant"] = removal_remnant(old, frames, ref_obj, ref_hand)["remnant"]
        # over the old removal's own mask: an object pixel it never filled is not a fill
        row["peer_object_fill"] = object_coloured_fill(old, frames, old_remove, ref_obj, ref_hand)
    if save is not None:  # for looking at the frames: source, masks, new and old removal
        save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save / f"{clip}_{mode}.npz", frames=frames, object=obj, hand=hand, remove=remove,
                            ref_object=ref_obj, removed=out, **({} if old is None else {"removed_old": old}))
    return row


def measure_sample(run: Path | None, peer) -> list[dict]:
    from hoi_cli.metrics.removal import removal_remnant
    from hoi_cli.sample import SAMPLE_CLIP, render_sample_masks
    from hoi_cli.stages.genhoi import Params, object_removal
    from hoi_cli.video import read_video

    frames, _ = read_video(SAMPLE_CLIP)
    truth = render_sample_masks(len(frames), frames.shape[2], frames.shape[1])
    inputs = {"a": (frames, truth["object"], truth["hand"])}
    if run is not None:
        from hoi_cli.stages.frames import load_frames
        from hoi_cli.stages.segment import load_masks

        masks = load_masks(run)
        inputs["b"] = (load_frames(run), masks["object"], masks["hand"])
    rows = []
    for mode, (f, obj, hand) in inputs.items():
        out, _ = object_removal(f, obj, hand, Params().dilate_px)
        row = {"clip": "sample", "mode": mode,
               "remnant": removal_remnant(out, f, truth["object"], truth["hand"])["remnant"]}
        if peer is not None:
            old = peer_removal(peer, f, obj, hand, Params().dilate_px)
            row["peer_remnant"] = removal_remnant(old, f, truth["object"], truth["hand"])["remnant"]
        rows.append(row)
        print(f"sample ({mode}) remnant {row['remnant']:.4f}"
              + (f"  old {row['peer_remnant']:.4f}" if "peer_remnant" in row else ""), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=Path, default=None, help="run folders (through 03_segment) for mode b")
    ap.add_argument("--modes", default="a,b")
    ap.add_argument("--peer", default=None, help="git revision of the old removal to compare with")
    ap.add_argument("--clips", default=None)
    ap.add_argument("--sample", nargs="?", const="", default=None, help="also the bundled sample [its RUN]")
    ap.add_argument("--save", type=Path, default=None, help="store each clip's frames, masks and removals here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    if "b" in modes and a.runs is None:
        raise SystemExit("mode b needs --runs")
    peer = load_peer(a.peer) if a.peer else None
    wanted = set(a.clips.split(",")) if a.clips else None
    rows = []
    for mode in modes:
        for split, clips in (("tune", TUNE), ("validate", VALIDATE)):
            for clip in clips:
                if wanted and clip not in wanted:
                    continue
                r = measure(clip, mode, a.runs, peer, a.save)
                r["split"] = split
                rows.append(r)
                extra = (f"  old {r['peer_remnant']:.3f}  object fill old {r['peer_object_fill']:.3f}  time "
                         f"new/old {r['seconds']:.1f}/{r['peer_seconds']:.1f} s" if peer else f"  {r['seconds']:.1f} s")
                print(f"({mode}) {split:>8} {clip:>7}  remnant {r['remnant']:.3f}  object fill {r['object_fill']:.3f}"
                      f"  missed by mask {r['missed_by_mask']:.3f}  hand erased {r['hand_erased']:.4f}{extra}",
                      file=sys.stderr, flush=True)
    print()
    for mode in modes:
        print(f"mode ({mode}): " + ("reference object mask removed (the fill alone)" if mode == "a"
                                    else "the pipeline's own 03_segment masks (the real figure)"))
        by = {s: [r for r in rows if r["mode"] == mode and r["split"] == s] for s in ("tune", "validate")}
        cols = TABLE_COLUMNS
        head = " ".join(f"{n:>8}" for n in ("remnant", "old", "obj-fill", "old", "missed"))
        print(f"{'tune clip':>11} {head} | {'val clip':>11} {head}")
        n = max(len(v) for v in by.values())

        def cell(r):
            if r is None:
                return " " * (12 + 9 * len(TABLE_COLUMNS) - 1)
            return f"{r['clip']:>11} " + " ".join(f"{r[c]:>8.3f}" if c in r else f"{'-':>8}" for c in TABLE_COLUMNS)

        for i in range(n):
            print(cell(by["tune"][i] if i < len(by["tune"]) else None) + " | "
                  + cell(by["validate"][i] if i < len(by["validate"]) else None))

        def mean(split, key, by=by):
            vals = [r[key] for r in by[split] if key in r]
            return float(np.nanmean(vals)) if vals and not np.isnan(vals).all() else float("nan")

        print(" | ".join(f"{'mean':>11} " + " ".join(f"{mean(sp, c):>8.3f}" for c in cols) for sp in ("tune", "validate")))
        print(" | ".join(f"{'hand erased':>11} {mean(sp, 'hand_erased'):>8.4f}" + " " * (9 * len(cols) - 9)
                         for sp in ("tune", "validate")))
        if peer:
            new = sum(r["seconds"] for r in rows if r["mode"] == mode)
            old = sum(r["peer_seconds"] for r in rows if r["mode"] == mode)
            print(f"removal time, all clips: new {new:.1f} s, old {old:.1f} s, ratio new/old {new / old:.2f}")
        print()
    if a.sample is not None:
        rows += measure_sample(Path(a.sample) if a.sample else None, peer)
    if a.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
