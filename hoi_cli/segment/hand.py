"""Hand masks: the rendered hand-mesh silhouette, refined against the image.

Convention:
    Images RGB uint8 ``(H, W, 3)``; masks bool ``(H, W)`` at the working resolution.

The fitted mesh (02_hands) gives the hand's shape but not its exact outline: the fit is off
by a few pixels, and the silhouette includes fingers hidden behind the object. The
refinement (`refine_hand_masks`):

1. Learns a skin colour model from the clip itself: a histogram over (Cr, Cb) and a coarse
   brightness (``luma_bins`` Y bins) of the pixels well inside the mesh silhouettes (eroded by
   ``band_px``) against the pixels just outside them (a ring beyond the band); ``skin_prob`` =
   in / (in + out) per colour bin.
2. Per frame, GrabCut in a small ROI around the silhouette: pixels deep inside the
   silhouette and skin-like are sure hand; inside but not skin-like (an occluding object)
   probable background; the band on either side of the outline is probable hand/background;
   beyond the band is sure background. The result is therefore never more than ``band_px``
   from the mesh outline.
3. Pixels whose colour is clearly not skin (``skin_prob < min_skin_prob``) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .grabcut import clean_mask


@dataclass
class HandRefineParams:
    band_px: int = 6  # the outline may move by up to this many pixels
    iterations: int = 2  # GrabCut iterations per frame
    max_side: int = 128  # downscale the hand ROI so its longest side is at most this (0 = off)
    # drop pixels whose colour is this unlikely to be skin. With ``luma_bins``, picked on the tuning InterDyn
    # clips (bench/measure_hand_masks.py, hand IoU): 0.2 / 0.35 / 0.5 at 2 luma bins 0.603 / 0.621 / 0.605;
    # chroma only (1 bin) 0.596 / 0.612 at 0.2 / 0.35
    min_skin_prob: float = 0.35
    bins: int = 32  # (Cr, Cb) histogram bins per axis
    # ... x this many brightness (Y) bins: a white phone or a black screen inside the mesh silhouette (fingers
    # behind it) shares its chroma with pale skin, not its brightness. Tuning at min_skin_prob 0.35: 1 / 2 / 3 / 4
    # bins 0.612 / 0.621 / 0.612 / 0.614
    luma_bins: int = 2


def _disk(r: int) -> np.ndarray:
    r = max(int(r), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def skin_model(frames: np.ndarray, masks: np.ndarray, band_px: int = 6, bins: int = 32,
               max_frames: int = 16, luma_bins: int = 2) -> np.ndarray | None:
    """``(luma_bins, bins, bins)`` P(skin | Y, Cr, Cb) learnt from pixels inside vs just outside ``masks``."""
    T = len(frames)
    idx = np.linspace(0, T - 1, min(T, max_frames)).round().astype(int)
    h_in = np.zeros((luma_bins, bins, bins), np.float64)
    h_out = np.zeros((luma_bins, bins, bins), np.float64)
    ranges = [0, 256, 0, 256, 0, 256]
    for t in idx:
        m = masks[t].astype(np.uint8)
        if m.sum() < 20:
            continue
        ycc = cv2.cvtColor(frames[t], cv2.COLOR_RGB2YCrCb)
        inner = cv2.erode(m, _disk(band_px // 2 + 1))
        outer = cv2.dilate(m, _disk(3 * band_px)) & ~cv2.dilate(m, _disk(band_px))
        h_in += cv2.calcHist([ycc], [0, 1, 2], inner, [luma_bins, bins, bins], ranges)
        h_out += cv2.calcHist([ycc], [0, 1, 2], outer, [luma_bins, bins, bins], ranges)
    if h_in.sum() < 50:
        return None
    h_in = np.stack([cv2.GaussianBlur(h, (3, 3), 0) for h in h_in / h_in.sum()])
    h_out = np.stack([cv2.GaussianBlur(h, (3, 3), 0) for h in h_out / max(h_out.sum(), 1.0)])
    return (h_in / (h_in + h_out + 1e-9)).astype(np.float32)


def skin_probability(image: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Per-pixel P(skin) ``(H, W)`` float32 from a `skin_model`."""
    luma_bins, bins = model.shape[0], model.shape[1]
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.int32)
    return model[(ycc[..., 0] * luma_bins) >> 8, (ycc[..., 1] * bins) >> 8, (ycc[..., 2] * bins) >> 8]


def refine_hand_mask(image: np.ndarray, mesh_mask: np.ndarray, skin: np.ndarray | None = None,
                     params: HandRefineParams | None = None) -> np.ndarray:
    """Refine one frame's mesh silhouette against the image (see the module docstring)."""
    p = params or HandRefineParams()
    mesh = mesh_mask.astype(bool)
    if mesh.sum() < 20:
        return mesh.copy()
    H, W = mesh.shape
    ys, xs = np.nonzero(mesh)
    pad = 2 * p.band_px + 2
    x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
    x1, y1 = min(W, xs.max() + 1 + pad), min(H, ys.max() + 1 + pad)
    rw, rh = x1 - x0, y1 - y0
    scale = min(1.0, p.max_side / max(rw, rh)) if p.max_side else 1.0
    m = mesh[y0:y1, x0:x1].astype(np.uint8)
    crop = image[y0:y1, x0:x1]
    prob = skin_probability(crop, skin) if skin is not None else None
    inner = cv2.erode(m, _disk(p.band_px)).astype(bool)
    outer = cv2.dilate(m, _disk(p.band_px)).astype(bool)
    seed = np.full(m.shape, cv2.GC_BGD, np.uint8)
    seed[outer] = cv2.GC_PR_BGD
    seed[m.astype(bool)] = cv2.GC_PR_FGD
    seed[inner] = cv2.GC_FGD
    if prob is not None:
        seed[inner & (prob < p.min_skin_prob)] = cv2.GC_PR_BGD
    if (seed == cv2.GC_FGD).sum() + (seed == cv2.GC_PR_FGD).sum() < 10:
        return mesh.copy()
    img = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    if scale < 1:
        sw, sh = max(4, int(round(rw * scale))), max(4, int(round(rh * scale)))
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
        seed = cv2.resize(seed, (sw, sh), interpolation=cv2.INTER_NEAREST)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # k-means initialisation: the same result whatever ran before
    try:
        cv2.grabCut(np.ascontiguousarray(img), seed, None, bgd, fgd, max(1, p.iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return mesh.copy()
    fg = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = (cv2.resize(fg * 255, (rw, rh), interpolation=cv2.INTER_LINEAR) >= 128).astype(np.uint8)
    fg = fg.astype(bool) & outer
    if prob is not None:
        fg &= prob >= p.min_skin_prob
    fg = clean_mask(fg, 0.1, inner & fg)
    out = np.zeros((H, W), bool)
    out[y0:y1, x0:x1] = fg
    return out


def refine_hand_masks(frames: np.ndarray, mesh_masks: np.ndarray, params: HandRefineParams | None = None,
                      progress=None) -> np.ndarray:
    """`refine_hand_mask` over a clip, with one skin model learnt from the whole clip."""
    p = params or HandRefineParams()
    skin = skin_model(frames, mesh_masks, p.band_px, p.bins, luma_bins=p.luma_bins)
    out = np.zeros(mesh_masks.shape, bool)
    for t in range(len(frames)):
        out[t] = refine_hand_mask(frames[t], mesh_masks[t], skin, p)
        if progress:
            progress(t + 1, len(frames))
    return out


def keypoint_hand_mask(keypoints: np.ndarray, height: int, width: int, min_score: float = 0.1,
                       radius_frac: float = 0.12) -> np.ndarray:
    """A rough hand mask from 21 2-D keypoints ``(..., 21, 3)``: thick bones plus the palm polygon.

    Used where no fitted mesh is available for a frame.
    """
    out = np.zeros((height, width), np.uint8)
    kps = np.asarray(keypoints, np.float64).reshape(-1, 21, 3)
    from ..conventions import OPENPOSE_PARENTS

    for kp in kps:
        ok = np.isfinite(kp[:, :2]).all(axis=1) & (np.nan_to_num(kp[:, 2], nan=0.0) >= min_score)
        if ok.sum() < 5:
            continue
        pts = kp[ok, :2]
        size = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 8.0)
        r = max(2, int(round(radius_frac * size)))
        for j in range(1, 21):
            pj = OPENPOSE_PARENTS[j]
            if ok[j] and ok[pj]:
                cv2.line(out, tuple(np.round(kp[j, :2]).astype(int)), tuple(np.round(kp[pj, :2]).astype(int)),
                         1, thickness=2 * r)
        palm = [i for i in (0, 1, 5, 9, 13, 17) if ok[i]]
        if len(palm) >= 3:
            cv2.fillPoly(out, [np.round(kp[palm, :2]).astype(np.int32)], 1)
    return out.astype(bool)
