"""Object-removal FILL quality against a known clean background: composites of real InterDyn clips.

`bench/measure_removal.py`'s remnant (object pixels left unchanged) cannot see a wrong fill (a
copied sleeve, a grey smear) and counts a correct fill that looks like the object (a white mug on a
white table) as a failure. Here the truth is known, by compositing:

- the **plate** is a real InterDyn clip (``../shared/data/interdyn/<id>/video.webm``, at most 28
  frames, decoded by `hoi_cli.video.read_video`). Its own object stays in it: for the removal it is
  background like everything but the pasted object and the plate's hand (``--plate-object
  background``; it moves with the plate's hand, and a fill taken from other frames can copy it
  where it was, which a real clip's removal meets wherever something unmasked moves: the other
  hand, a sleeve), or it is kept with the hand, as the pipeline keeps hands (``kept``: the figure
  for the fill over a background where all that moves is masked);
- the **pasted object** is cut, frame by frame, from ANOTHER InterDyn clip with that clip's SAM2
  mask (``masks.npz``, its largest ``object_<name>``; where that clip's hand covered it, the cut has
  holes that show the plate), scaled down (one factor per clip) to at most ``OBJECT_AREA_MAX`` of
  the plate's image, and pasted along the plate's hand: its centre follows one hand of the plate's
  ``hand`` mask (the connected component tracked from the largest one, smoothed over time), just
  outside the hand's equivalent disc, on the side of the hand (one of 8 directions from a seeded
  start) where the plate's own object hides the least of it, the hand about a quarter, and the least
  of it lies on what moves unmasked in the plate (a forearm the hand mask stops short of:
  `moving_content`), so that it sits partly under the hand like a held object. The plate's hand
  and object (their SAM2 masks) stay in front where they overlap (``occl``: the share of the pasted
  object hidden). A hard-edged paste: no shadow, blur or light of the plate's scene, so its edge is
  easier to remove than a real object's;
- 07_genhoi's removal runs on the composite (as its `object_removal`: `hoi_cli.inpaint.removal_regions`
  + `remove_object`, default `Params`; ``--remove-set KEY=VALUE`` tries another `remove_object` keyword), with the pasted object's visible mask
  (exact by construction, whatever the source's SAM2 mask got wrong) and the plate's SAM2 hand mask
  (``kept``: with the plate's object masks, which the removal then treats as a hand: its hand
  completion and hand-colour steps see them too);
- the **peer** fills the same removal mask per frame with OpenCV's ``cv2.inpaint`` (Telea, the
  radius `remove_object` uses), in the same run.

The plate's SAM2 masks are used closed and with their holes filled (`solid`), for the layering,
the removal and the scoring alike; they are the truth of what is in front, so where they miss a
piece of the hand (182974, 204076: masks whose alignment meta.json calls uncertain) that piece is
scored as background the fill should have recovered.

Pairing (fixed, ``--seed``-ed): a tuning plate gets its object from a validation clip and a
validation plate from a tuning clip (a permutation of the other split), so within a split no clip
is both plate and object source.

Splits (fixed; tune only on ``tune``):

- ``tune``: InterDyn 125021, 137875, 141667, 176110, 182974, 191021;
- ``val``: InterDyn 204076, 208810, 243, 24815, 33576, 35671.

Scored region: every pixel the removal mask takes or the pasted object shows (a pasted pixel left
out of the removal counts, as it stays in the output), less the plate's hand mask (``kept``: and
its object's). A table per plate-object mode; columns (per clip; a split's figure is the mean over
its clips):

- ``MAE``: mean absolute RGB error (0-255) of the output against the plate over the scored region,
  all frames pooled; ``peer`` the same for the Telea fill;
- ``PSNR``: dB, from the mean squared RGB error over the same pixels;
- ``flick``: temporal error: the mean absolute difference between the output's frame-to-frame
  change and the plate's own (``|(out[t] - out[t-1]) - (plate[t] - plate[t-1])|``, RGB, pixels
  scored in both frames): 0 for a fill that changes exactly as the true background does, larger
  for a fill that flickers (or stands still over a moving background);
- per clip on stderr also: ``none`` (the MAE of the composite itself, doing nothing), ``occl``,
  ``MAE object/margin`` (the MAE split: over the pixels the pasted object showed, and over the rest
  of the scored region, the margin the removal mask adds around it, background in the composite),
  ``over`` (the pixels removed farther than ``dilate_px`` + 2 from the pasted object, as a share of
  its visible pixels: the removal mask's colour growth taking in background), the scored share of
  the image and the seconds of each method (ours: `removal_regions` + `remove_object`).
  Ratios ours/peer per split follow the table (MAE, flicker, time; PSNR as ours - peer in dB).

``--save DIR`` writes a PNG sheet per plate clip and mode (``<plate>_<source>_<mode>.png``), every
4th frame a row: composite | removal mask (red: removed, blue: kept, over the composite dimmed) |
our fill | peer fill | plate.

Usage: python bench/measure_fill.py [--splits tune,val] [--plate-object background,kept]
       [--clips 243,125021] [--seed 0] [--remove-set unchanged_diff=0] [--save /tmp/fill] [--json]
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "interdyn"
SPLITS = {"tune": ("125021", "137875", "141667", "176110", "182974", "191021"),
          "val": ("204076", "208810", "243", "24815", "33576", "35671")}
MAX_FRAMES = 28
OBJECT_AREA_MAX = 0.08  # of the plate's image: a held object, not a wall of keyboard
SHEET_EVERY = 4
PLATE_OBJECT_MODES = ("background", "kept")
TABLE_COLUMNS = ("mae", "peer_mae", "psnr", "peer_psnr", "flicker", "peer_flicker")


# ------------------------------------------------------------------ composite
def pairing(seed: int = 0) -> dict[str, str]:
    """``{plate clip: object source clip}``: each split's plates get a seeded permutation of the other split."""
    rng = np.random.default_rng(seed)
    tune, val = SPLITS["tune"], SPLITS["val"]
    return {**dict(zip(tune, rng.permutation(val).tolist())), **dict(zip(val, rng.permutation(tune).tolist()))}


def largest_object(masks) -> np.ndarray:
    keys = [k for k in masks.files if k.startswith("object_")]
    return np.asarray(masks[max(keys, key=lambda k: int(masks[k].sum()))], bool)


@dataclass
class Cut:
    """One frame of the pasted object: its pixels and mask in a crop, and its centroid in the crop."""
    rgb: np.ndarray
    mask: np.ndarray
    centre: tuple[float, float]  # x, y


def cut_object(frames: np.ndarray, masks: np.ndarray, max_area: float) -> list[Cut | None]:
    """Per frame the object's crop (None where its mask is empty), all scaled by one factor so that
    its median area is at most ``max_area`` px."""
    areas = masks.reshape(len(masks), -1).sum(1)
    if not areas.any():
        return [None] * len(masks)
    scale = min(1.0, float(np.sqrt(max_area / np.median(areas[areas > 0]))))
    cuts: list[Cut | None] = []
    for f, m in zip(frames, masks):
        if not m.any():
            cuts.append(None)
            continue
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        rgb, mk = f[y0:y1, x0:x1], m[y0:y1, x0:x1].astype(np.float32)
        if scale < 1.0:
            size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            mk = cv2.resize(mk, size, interpolation=cv2.INTER_AREA)
        mk = mk >= 0.5
        if not mk.any():
            cuts.append(None)
            continue
        cy, cx = (float(v.mean()) for v in np.nonzero(mk))
        cuts.append(Cut(np.ascontiguousarray(rgb), mk, (cx, cy)))
    return cuts


def track_hand(hand: np.ndarray) -> tuple[np.ndarray | None, float]:
    """``(centres (T, 2) x, y, radius)`` of one hand: the largest connected component of the first
    frame with a hand, then per frame the component (of at least a third of that frame's largest)
    nearest the last centre; frames without a hand hold the nearest known centre; smoothed over time
    (Gaussian, sigma 1.5 frames). The radius is that of a disc of the hand's median area. None where
    no frame has a hand."""
    T = len(hand)
    centres = np.full((T, 2), np.nan)
    areas = []
    last = None
    for t in range(T):
        n, _, stats, cents = cv2.connectedComponentsWithStats(hand[t].astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= stats[1:, cv2.CC_STAT_AREA].max() / 3]
        if last is None:
            i = max(big, key=lambda i: stats[i, cv2.CC_STAT_AREA])
        else:
            i = min(big, key=lambda i: float(np.hypot(*(cents[i] - last))))
        last = cents[i]
        centres[t] = last
        areas.append(stats[i, cv2.CC_STAT_AREA])
    known = np.flatnonzero(~np.isnan(centres[:, 0]))
    if not len(known):
        return None, 0.0
    for t in range(T):  # hold the nearest known centre
        if np.isnan(centres[t, 0]):
            centres[t] = centres[known[np.argmin(np.abs(known - t))]]
    smooth = np.stack([cv2.GaussianBlur(centres[:, i].reshape(-1, 1), (1, 0), 1.5,
                                        borderType=cv2.BORDER_REPLICATE).ravel() for i in range(2)], 1)
    return smooth, float(np.sqrt(np.median(areas) / np.pi))


HAND_COVER = 0.25  # the share of the pasted object the plate's hand should hide: a held object


def object_path(hand: np.ndarray, plate_object: np.ndarray, cuts: list[Cut | None], rng: np.random.Generator,
                moving: np.ndarray | None = None) -> np.ndarray:
    """``(T, 2)`` x, y where the object's centroid goes: just outside the tracked hand's disc (the
    object's centre a quarter of its radius beyond it, so that the hand covers part of it), on the
    side of the hand (one of 8 directions from a seeded start) where the plate's own object hides the
    least of it, the hand closest to ``HAND_COVER`` of it, and the least of it lies on ``moving``
    (`moving_content`); where the plate has no hand, a slow horizontal sweep across the image's
    middle. Kept inside the image."""
    T, H, W = hand.shape
    centres, r_hand = track_hand(hand)
    if centres is None:
        return _inside(np.stack([np.linspace(0.3 * W, 0.7 * W, T), np.full(T, 0.5 * H)], 1), cuts, H, W)
    sizes = [c.mask.sum() for c in cuts if c is not None]
    r_obj = float(np.sqrt(np.median(sizes) / np.pi)) if sizes else 0.0
    start = rng.uniform(0, 2 * np.pi)
    best, best_cost = None, np.inf
    for k in range(8):
        a = start + k * np.pi / 4
        path = _inside(centres + (r_hand + 0.25 * r_obj) * np.array([np.cos(a), np.sin(a)]), cuts, H, W)
        pasted = place(cuts, path, H, W)
        n = max(1, int(pasted.sum()))
        cost = (pasted & plate_object).sum() / n + abs((pasted & hand).sum() / n - HAND_COVER)
        if moving is not None:
            cost += (pasted & moving).sum() / n
        if cost < best_cost:
            best, best_cost = path, cost
    return best


def _inside(path: np.ndarray, cuts: list[Cut | None], H: int, W: int) -> np.ndarray:
    """``path`` moved so that each frame's whole cut lies inside the image."""
    path = path.copy()
    for t, c in enumerate(cuts):
        if c is None:
            continue
        h, w = c.mask.shape
        cx, cy = c.centre
        path[t, 0] = np.clip(path[t, 0], cx, max(cx, W - (w - cx)))
        path[t, 1] = np.clip(path[t, 1], cy, max(cy, H - (h - cy)))
    return path


def _placements(cuts: list[Cut | None], path: np.ndarray, H: int, W: int):
    """``(t, image window, crop window)`` of each frame's cut with its centroid at ``path[t]``, clipped to the image."""
    for t, c in enumerate(cuts):
        if c is None:
            continue
        h, w = c.mask.shape
        x0, y0 = int(round(path[t, 0] - c.centre[0])), int(round(path[t, 1] - c.centre[1]))
        cx0, cy0 = max(0, -x0), max(0, -y0)
        cx1, cy1 = min(w, W - x0), min(h, H - y0)
        if cx1 > cx0 and cy1 > cy0:
            yield t, (slice(y0 + cy0, y0 + cy1), slice(x0 + cx0, x0 + cx1)), (slice(cy0, cy1), slice(cx0, cx1))


def place(cuts: list[Cut | None], path: np.ndarray, H: int, W: int) -> np.ndarray:
    """``(T, H, W)`` bool: the pasted object's masks (`_placements`)."""
    pasted = np.zeros((len(cuts), H, W), bool)
    for t, win, crop in _placements(cuts, path, H, W):
        pasted[t][win] = cuts[t].mask[crop]
    return pasted


def paste(plate: np.ndarray, front: np.ndarray, cuts: list[Cut | None], path: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(composite, visible object mask, pasted object mask)``: each cut placed with its centroid at
    ``path[t]``, behind ``front`` (the plate's hand and object stay in front)."""
    comp = plate.copy()
    H, W = plate.shape[1:3]
    for t, win, crop in _placements(cuts, path, H, W):
        m = cuts[t].mask[crop]
        comp[t][win][m] = cuts[t].rgb[crop][m]
    pasted = place(cuts, path, H, W)
    comp[front] = plate[front]
    return comp, pasted & ~front, pasted


def moving_content(plate: np.ndarray, front: np.ndarray, min_diff: float = 25.0) -> np.ndarray:
    """``(T, H, W)`` bool: the plate's pixels outside ``front`` (its masks) that differ from their
    clip median by more than ``min_diff`` (mean absolute RGB): what moves there unmasked (a forearm the
    hand mask stops short of, a sleeve) or a camera pan. Under the pasted object it would be truth no
    removal can know, so the path avoids it where a side of the hand allows."""
    med = np.median(plate, axis=0)
    return (np.abs(plate.astype(np.float32) - med).mean(-1) > min_diff) & ~front


def solid(masks: np.ndarray, close_px: int = 3) -> np.ndarray:
    """SAM2 masks without their speckle: closed by a ``close_px`` disc, enclosed holes filled. A hole
    in the plate's hand mask (a motion-blurred edge) would show the pasted object through the hand,
    and score the removal on recovering a hand it was told nothing about."""
    out = np.zeros(np.shape(masks), bool)
    for t, m in enumerate(np.asarray(masks, bool)):
        if not m.any():
            continue
        r = close_px + 1  # padded: a closing does not erode at the image's edge, and would glue masks to it
        c = cv2.morphologyEx(np.pad(m.astype(np.uint8), r), cv2.MORPH_CLOSE, _disk(close_px))[r:-r, r:-r]
        flood = np.pad(c, 1)
        cv2.floodFill(flood, None, (0, 0), 1)  # the outside; what it cannot reach is enclosed
        out[t] = (c > 0) | (flood[1:-1, 1:-1] == 0)
    return out


def make_composite(plate_clip: str, source_clip: str, seed: int = 0) -> dict:
    """The composite of ``source_clip``'s object on ``plate_clip``: ``plate, hand, composite, visible,
    pasted`` (see `paste`), the frames cut to the shorter clip (at most ``MAX_FRAMES``)."""
    from hoi_cli.video import read_video

    plate, _ = read_video(DATA / plate_clip / "video.webm", max_frames=MAX_FRAMES)
    src, _ = read_video(DATA / source_clip / "video.webm", max_frames=MAX_FRAMES)
    with np.load(DATA / plate_clip / "masks.npz") as z:
        hand = solid(z["hand"])
        plate_object = solid(np.any([z[k] for k in z.files if k.startswith("object_")], axis=0))
    with np.load(DATA / source_clip / "masks.npz") as z:
        obj = largest_object(z)
    T = min(len(plate), len(src), len(hand), len(obj))
    plate, src, hand, plate_object, obj = plate[:T], src[:T], hand[:T], plate_object[:T], obj[:T]
    H, W = plate.shape[1:3]
    cuts = cut_object(src, obj, OBJECT_AREA_MAX * H * W)
    # one generator per pair, from the seed and the plate: the same composite with or without --clips
    rng = np.random.default_rng([seed, int(plate_clip)])
    front = hand | plate_object
    path = object_path(hand, plate_object, cuts, rng, moving_content(plate, front))
    comp, visible, pasted = paste(plate, front, cuts, path)
    return {"plate": plate, "hand": hand, "plate_object": plate_object, "composite": comp, "visible": visible,
            "pasted": pasted}


# ------------------------------------------------------------------ scores
def fill_scores(out: np.ndarray, plate: np.ndarray, region: np.ndarray) -> dict:
    """``mae``, ``psnr`` and ``flicker`` (module docstring) of ``out`` against ``plate`` over ``region``."""
    if not region.any():
        return {"mae": float("nan"), "psnr": float("nan"), "flicker": float("nan")}
    diff = out.astype(np.float64) - plate.astype(np.float64)
    d = diff[region]
    mse = float((d ** 2).mean())
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    both = region[1:] & region[:-1]
    # (out[t] - out[t-1]) - (plate[t] - plate[t-1]) = diff[t] - diff[t-1]
    flicker = float(np.abs(diff[1:] - diff[:-1])[both].mean()) if both.any() else float("nan")
    return {"mae": float(np.abs(d).mean()), "psnr": psnr, "flicker": flicker}


def peer_fill(frames: np.ndarray, remove: np.ndarray) -> np.ndarray:
    """The peer: ``cv2.inpaint`` (Telea) of each frame's ``remove`` pixels, with `remove_object`'s radius."""
    from hoi_cli.inpaint import remove_object

    radius = inspect.signature(remove_object).parameters["inpaint_radius"].default
    out = frames.copy()
    for t in range(len(frames)):
        if remove[t].any():
            out[t] = cv2.inpaint(frames[t], remove[t].astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return out


def score_removal(comp: dict, plate_object: str = "background", remove_params: dict | None = None
                  ) -> tuple[dict, dict]:
    """Our removal and the peer on one composite: ``(row of figures, images for the sheet)``.
    ``plate_object``: "background" (the removal keeps the plate's hand only; its object is
    background, scored) or "kept" (kept with the hand, as a hand is, and not scored).
    ``remove_params``: `remove_object` keywords to try instead of its defaults (07_genhoi's)."""
    from hoi_cli.inpaint import remove_object, removal_regions
    from hoi_cli.stages.genhoi import Params

    frames, plate = comp["composite"], comp["plate"]
    hand = comp["hand"] | comp["plate_object"] if plate_object == "kept" else comp["hand"]
    t0 = time.perf_counter()
    # what 07_genhoi's object_removal does (and stores)
    remove, keep, shows_object = removal_regions(frames, comp["visible"], hand, Params().dilate_px)
    ours = np.asarray(remove_object(frames, remove, keep, shows_object, **(remove_params or {})))
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer = peer_fill(frames, remove)
    peer_seconds = time.perf_counter() - t0
    region = (remove | comp["visible"]) & ~hand
    row = {**fill_scores(ours, plate, region), "seconds": seconds, "peer_seconds": peer_seconds}
    row.update({f"peer_{k}": v for k, v in fill_scores(peer, plate, region).items()})
    row["none_mae"] = fill_scores(frames, plate, region)["mae"]
    # where the object showed, and the margin the removal adds around it (true background in the composite)
    for part, where in (("object", region & comp["visible"]), ("margin", region & ~comp["visible"])):
        row[f"mae_{part}"] = fill_scores(ours, plate, where)["mae"]
        row[f"peer_mae_{part}"] = fill_scores(peer, plate, where)["mae"]
    row["occluded"] = float((comp["pasted"] & ~comp["visible"]).sum() / max(1, comp["pasted"].sum()))
    row["region_share"] = float(region.mean())
    # removed beyond the dilation's reach of the pasted object: the colour growth taking in background
    near = np.stack([cv2.dilate(m.astype(np.uint8), _disk(Params().dilate_px + 2)) > 0 for m in comp["pasted"]])
    row["over_removed"] = float((remove & ~near).sum() / max(1, comp["visible"].sum()))
    return row, {"ours": ours, "peer": peer, "remove": remove, "keep": keep}


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def save_sheet(path: Path, comp: dict, images: dict, every: int = SHEET_EVERY) -> None:
    """Rows every ``every``-th frame: composite | removal mask | our fill | peer fill | plate."""
    from hoi_cli.video import write_image

    rows = []
    for t in range(0, len(comp["plate"]), every):
        f = comp["composite"][t]
        overlay = (f.astype(np.float32) * 0.4).astype(np.uint8)
        overlay[images["remove"][t]] = (255, 40, 40)
        overlay[images["keep"][t]] = (60, 90, 255)
        rows.append(np.concatenate([f, overlay, images["ours"][t], images["peer"][t], comp["plate"][t]], 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.concatenate(rows, 0))


def measure(plate_clip: str, source_clip: str, seed: int, modes: list[str], save: Path | None,
            remove_params: dict | None = None) -> list[dict]:
    """One row per plate-object mode, on the same composite."""
    comp = make_composite(plate_clip, source_clip, seed)
    rows = []
    for mode in modes:
        row, images = score_removal(comp, mode, remove_params)
        if save is not None:
            save_sheet(save / f"{plate_clip}_{source_clip}_{mode}.png", comp, images)
        rows.append({"clip": plate_clip, "object_from": source_clip, "plate_object": mode, **row})
    return rows


# ------------------------------------------------------------------ report
def print_table(rows: list[dict], splits: list[str]) -> None:
    by = {s: [r for r in rows if r["split"] == s] for s in splits}
    head = " ".join(f"{n:>6}" for n in ("MAE", "peer", "PSNR", "peer", "flick", "peer"))
    width = 14 + 7 * len(TABLE_COLUMNS)

    def cell(r):
        if r is None:
            return " " * width
        return f"{r['clip'] + '<' + r['object_from']:>14}" + "".join(f"{r[c]:>7.2f}" for c in TABLE_COLUMNS)

    print(" | ".join(f"{s + ' plate<obj':>14}{head:>{width - 14}}" for s in splits))
    for i in range(max(len(v) for v in by.values())):
        print(" | ".join(cell(by[s][i] if i < len(by[s]) else None) for s in splits))

    def mean(s, key):
        vals = [r[key] for r in by[s]]
        return float(np.mean(vals)) if vals else float("nan")

    print(" | ".join(f"{'mean':>14}" + "".join(f"{mean(s, c):>7.2f}" for c in TABLE_COLUMNS) for s in splits))
    for s in splits:
        if not by[s]:
            continue
        sec, psec = sum(r["seconds"] for r in by[s]), sum(r["peer_seconds"] for r in by[s])
        print(f"{s}: ours/peer MAE {mean(s, 'mae') / mean(s, 'peer_mae'):.2f}, flicker "
              f"{mean(s, 'flicker') / mean(s, 'peer_flicker'):.2f}, PSNR ours-peer "
              f"{mean(s, 'psnr') - mean(s, 'peer_psnr'):+.2f} dB, time {sec:.1f}/{psec:.2f} s = {sec / psec:.0f}x; "
              f"doing nothing: MAE {mean(s, 'none_mae'):.2f}")


def remove_settings(pairs: list[str]) -> dict:
    """``--remove-set KEY=VALUE`` as `remove_object` keywords, each checked against its signature."""
    from hoi_cli.inpaint import remove_object

    known = inspect.signature(remove_object).parameters
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known or known[key].kind != inspect.Parameter.KEYWORD_ONLY:
            raise SystemExit(f"--remove-set {pair!r}: expected KEY=VALUE with KEY one of remove_object's "
                             f"keywords ({', '.join(k for k, v in known.items() if v.kind == v.KEYWORD_ONLY)})")
        try:
            out[key] = type(known[key].default)(ast.literal_eval(value))
        except (ValueError, SyntaxError, TypeError):
            raise SystemExit(f"--remove-set {pair!r}: {value!r} is not a {type(known[key].default).__name__}") from None
    return out


def clip_line(r: dict) -> str:
    return (f"{r['split']:>4} {r['clip']:>7} < {r['object_from']:>7} {r['plate_object']:>10}  MAE {r['mae']:.2f} "
            f"(peer {r['peer_mae']:.2f}, none {r['none_mae']:.2f})  PSNR {r['psnr']:.2f} ({r['peer_psnr']:.2f})  "
            f"flicker {r['flicker']:.2f} ({r['peer_flicker']:.2f})  MAE object/margin {r['mae_object']:.1f}/"
            f"{r['mae_margin']:.1f} ({r['peer_mae_object']:.1f}/{r['peer_mae_margin']:.1f})  "
            f"occl {r['occluded']:.2f}  over "
            f"{r['over_removed']:.2f}  region {r['region_share']:.3f}  {r['seconds']:.1f}/{r['peer_seconds']:.2f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="tune,val")
    ap.add_argument("--clips", default="", help="only these plate clip ids")
    ap.add_argument("--seed", type=int, default=0, help="pairing and paths")
    ap.add_argument("--plate-object", default=",".join(PLATE_OBJECT_MODES),
                    help="the plate's own object: background (scored) and/or kept (with the hand)")
    ap.add_argument("--remove-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a remove_object keyword instead of its default (to try a change)")
    ap.add_argument("--save", type=Path, default=None, help="write a PNG sheet per plate clip here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    splits = [s for s in a.splits.split(",") if s]
    modes = [m for m in a.plate_object.split(",") if m]
    for given, known in ((splits, SPLITS), (modes, PLATE_OBJECT_MODES)):
        bad = [s for s in given if s not in known]
        if bad or not given:
            raise SystemExit(f"unknown choice {bad[0] if bad else ''!r}: choose from {', '.join(known)}")
    if not DATA.is_dir():
        raise SystemExit(f"no InterDyn clips at {DATA}: put ../shared/data beside the checkout")
    remove_params = remove_settings(a.remove_set)
    wanted = set(a.clips.split(",")) - {""}
    pairs = pairing(a.seed)
    rows = []
    for split in splits:
        for clip in SPLITS[split]:
            if wanted and clip not in wanted:
                continue
            for r in measure(clip, pairs[clip], a.seed, modes, a.save, remove_params):
                r = {"split": split, **r}
                rows.append(r)
                print(clip_line(r), file=sys.stderr, flush=True)
    if not rows:
        raise SystemExit("no clip measured: check --clips against the splits' plate clips")
    for mode in modes:
        print(f"\nthe plate's own object {'kept with the hand' if mode == 'kept' else 'as background'}:")
        print_table([r for r in rows if r["plate_object"] == mode], [s for s in splits if any(r["split"] == s
                                                                                              for r in rows)])
    if a.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
