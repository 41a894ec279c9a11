"""Reference preparation: cut the object out of its image and record its shape.

Three sources:

- an image with an alpha channel: the alpha is the cut-out (``method = "alpha"``);
- an image of the object on a plain background (white product shot, black studio cloth):
  a colour model of the image border (k-means in LAB, and a smooth fit of its gradient) seeds
  GrabCut; the result is cleaned (largest components, holes filled) into the object's
  silhouette; then closed-form matting (`pymatting`) on a trimap made from it estimates the
  alpha, so that glass and soft edges keep their partial alpha and enclosed background (a
  mug's handle) stays open, and the object's colours under partial alpha are estimated with
  the backdrop taken out (``method = "matte"``; ``matting = False``: the silhouette with a
  feathered edge, ``method = "grabcut"``). The
  border must be plain: when it is not, or when nothing (or everything) differs from it,
  `BadInputError` says so;
- a frame of the clip and its object mask (self-reenactment, ``method = "frame"``).

Convention (reference):
    ``rgb (h, w, 3)`` uint8 and ``alpha (h, w)`` float32 in [0, 1], cropped to the object's
    tight box (alpha > 0.15: see-through parts included); ``aspect = w / h`` of that box; ``size_px = (w, h)`` in pixels of
    the source image (before any working downscale); ``fill`` = object area / box area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInputError


@dataclass
class ReferenceParams:
    max_side: int = 512  # the cut-out is stored at most this large (longest side, px)
    seg_side: int = 320  # segmentation works at this longest side, px
    border_frac: float = 0.03  # width of the border strip that models the background, fraction of min side
    bg_clusters: int = 2  # k-means colours of the border (a gradient or shadow needs 2)
    bg_cluster_min_share: float = 0.25  # a border colour is background only if it covers this share (an object may touch the border)
    plain_frac: float = 0.85  # >= this fraction of border pixels must lie near a background colour
    plain_tol: float = 12.0  # LAB distance counted as "near" the background colour
    fg_tol: float = 30.0  # LAB distance above which a pixel is surely foreground (upper bound of the adaptive threshold)
    fg_tol_min: float = 5.0  # lower bound of the adaptive threshold (clean studio backgrounds: glass edges count)
    fg_noise_factor: float = 6.0  # adaptive threshold = factor * 99th percentile of the border's colour noise
    close_frac: float = 0.02  # morphological closing before hole filling, fraction of the longest side
    grabcut_iters: int = 5
    grabcut_min_keep: float = 0.6  # GrabCut keeping less than this share of the colour mask (glass, thin
    # outlines) means it lost the object: the closed, hole-filled colour mask is used instead
    min_fg_frac: float = 0.01  # object area below this fraction of the image: cannot separate
    max_fg_frac: float = 0.92  # above it: the background was not separated
    min_component_frac: float = 0.15  # keep components at least this fraction of the largest
    feather_px: float = 1.0  # Gaussian sigma of the alpha edge at the segmentation size, px
    alpha_threshold: float = 0.5  # alpha above which a pixel counts as object (fill)
    box_alpha_threshold: float = 0.15  # alpha above which a pixel is inside the object's box
    matting: bool = True  # estimate alpha by closed-form matting (glass, soft edges, holes kept open)
    matte_band_frac: float = 0.015  # unknown band either side of the silhouette's edge, fraction of the longest side
    hole_min_frac: float = 0.005  # enclosed background of at least this share of the object stays a hole...
    hole_solid_ring: float = 0.5  # ...when at least this share of its surroundings is solid object


@dataclass
class Reference:
    rgb: np.ndarray  # (h, w, 3) uint8, cropped to the object
    alpha: np.ndarray  # (h, w) float32 [0, 1]
    aspect: float  # w / h of the tight box
    size_px: tuple[int, int]  # (w, h) of the tight box in the source image, px
    fill: float  # object area / tight-box area
    method: str  # "alpha" | "matte" | "grabcut" | "frame"
    source: str = ""  # path, or "run:<dir>#frame=<N>"
    sha256: str = ""  # of the source file (or of the frame+mask bytes)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "method": self.method,
                "aspect": round(float(self.aspect), 6), "size_px": [int(s) for s in self.size_px],
                "fill": round(float(self.fill), 6), "stored_size": [int(self.rgb.shape[1]), int(self.rgb.shape[0])],
                **self.extra}


# ---------------------------------------------------------------- entry points
def load_reference(path: str | Path, params: ReferenceParams | None = None) -> Reference:
    """Read an image file and cut out its object."""
    from ..store import file_digest
    from ..video import read_image

    path = Path(path)
    img = read_image(path)  # BadInputError when missing/unreadable
    ref = cut_reference(img, params, name=str(path))
    ref.source = str(path.resolve())
    ref.sha256 = file_digest(path)
    return ref


def cut_reference(img: np.ndarray, params: ReferenceParams | None = None, name: str = "image") -> Reference:
    """Cut the object out of an RGB or RGBA uint8 image (see the module docstring)."""
    p = params or ReferenceParams()
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 8:
        raise BadInputError(f"reference {name} is not an RGB image of useful size (shape {img.shape})",
                            "give a PNG/JPEG of the object, at least 8x8 px")
    if img.shape[2] == 4:
        alpha = img[..., 3].astype(np.float32) / 255.0
        frac = float((alpha > p.alpha_threshold).mean())
        if frac < p.min_fg_frac:
            raise BadInputError(f"reference {name}: its alpha channel is (almost) empty ({frac:.1%} opaque)",
                                "give an image whose alpha marks the object, or one on a plain background")
        if frac < 0.999:  # a real cut-out; an all-opaque alpha means "no alpha": segment it
            return _finish(img[..., :3], alpha, "alpha", p)
    rgb = np.ascontiguousarray(img[..., :3])
    alpha = segment_plain_background(rgb, p, name=name)
    return _finish(rgb, alpha, "matte" if p.matting else "grabcut", p)


def reference_from_frame(frame: np.ndarray, mask: np.ndarray, params: ReferenceParams | None = None,
                         source: str = "frame") -> Reference:
    """The clip's own object: ``frame (H,W,3)`` cut by its boolean ``mask (H,W)`` (self-reenactment)."""
    import hashlib

    import cv2

    p = params or ReferenceParams()
    mask = np.asarray(mask, bool)
    if mask.sum() < 16:
        raise BadInputError(f"{source}: the object mask is empty on that frame",
                            "pick a frame where the object is visible (--reference-from-frame N)")
    alpha = mask.astype(np.float32)
    if p.feather_px > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), 0.5) * mask  # soften the inside edge only: no background bleeds in
    ref = _finish(np.ascontiguousarray(frame[..., :3]), alpha, "frame", p)
    ref.source = source
    ref.sha256 = hashlib.sha256(np.ascontiguousarray(frame).tobytes() + np.packbits(mask).tobytes()).hexdigest()
    return ref


# ---------------------------------------------------------------- segmentation
def segment_plain_background(rgb: np.ndarray, params: ReferenceParams | None = None, name: str = "image") -> np.ndarray:
    """Alpha ``(H, W)`` float32 of the object on a plain background; `BadInputError` if it cannot be separated."""
    import cv2

    p = params or ReferenceParams()
    H, W = rgb.shape[:2]
    s = min(1.0, p.seg_side / max(H, W))
    small = cv2.resize(rgb, (max(8, round(W * s)), max(8, round(H * s))), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    h, w = small.shape[:2]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0  # OpenCV's 8-bit L is 0..255; use CIE units so distances are ~Delta E
    lab[..., 1:] -= 128.0
    b = max(2, int(round(p.border_frac * min(h, w))))
    border = np.zeros((h, w), bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    samples = lab[border]
    k = max(1, int(p.bg_clusters))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(samples, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    share = np.bincount(labels.ravel(), minlength=k) / len(labels)
    centres = centres[share >= min(p.bg_cluster_min_share, share.max())]
    # distance of every pixel to its nearest background colour
    d = np.min(np.linalg.norm(lab[..., None, :] - centres[None, None], axis=-1), axis=-1)
    # ...or to a smooth (quadratic) fit of the border: a studio backdrop's light falls off, and
    # faint glass edges only stand out against the backdrop's own gradient
    d = np.minimum(d, np.linalg.norm(lab - _smooth_background(lab, border), axis=-1))
    plain = float((d[border] < p.plain_tol).mean())
    if plain < p.plain_frac:
        raise BadInputError(
            f"reference {name}: cannot separate the object: its background is not plain "
            f"(only {plain:.0%} of the border is near one colour; need {p.plain_frac:.0%})",
            "give a PNG with an alpha channel, or a photo of the object alone on a plain (white/black) background")
    noise = float(np.percentile(d[border], 99))
    tol = float(np.clip(p.fg_noise_factor * noise, p.fg_tol_min, p.fg_tol))
    fg = d > tol
    frac = float(fg.mean())
    if frac < p.min_fg_frac * 0.5:
        raise BadInputError(f"reference {name}: cannot separate the object: nothing differs from the background",
                            "give a photo where the object stands out from a plain background, or a PNG with alpha")
    gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    closed = _clean_mask(fg, p.min_component_frac, close_px=max(1, round(p.close_frac * max(h, w))), open_px=0)
    gc[closed] = cv2.GC_PR_FGD
    strong = d > max(tol * 3.0, p.fg_tol)
    gc[cv2.erode(strong.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = cv2.GC_FGD
    gc[border & (d < p.plain_tol)] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, gc, None, bgd, fgd, p.grabcut_iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate models (e.g. a single colour): keep the colour-distance mask
        pass
    mask = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    mask = _clean_mask(mask, p.min_component_frac, close_px=max(1, round(p.close_frac * max(h, w))))
    if mask.sum() < p.grabcut_min_keep * closed.sum():
        mask = closed
    frac = float(mask.mean())
    if frac < p.min_fg_frac or frac > p.max_fg_frac:
        raise BadInputError(
            f"reference {name}: cannot separate the object from its background (object covers {frac:.0%} of the image)",
            "give a PNG with an alpha channel, or a photo of the object alone on a plain background")
    touching = np.mean([mask[0].mean(), mask[-1].mean(), mask[:, 0].mean(), mask[:, -1].mean()])
    if touching > 0.5:
        raise BadInputError(f"reference {name}: the segmented object covers most of the image border",
                            "crop the image with some background around the object, or give a PNG with alpha")
    if p.matting:
        # the extent is all that measurably differs from the backdrop: GrabCut drops faint glass,
        # the matting gives it the alpha its colours say
        alpha = matte_alpha(small, mask | closed, d, tol, p)
    else:
        alpha = mask.astype(np.float32)
        if p.feather_px > 0:
            alpha = cv2.GaussianBlur(alpha, (0, 0), p.feather_px)
    if s < 1:
        alpha = cv2.resize(alpha, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.clip(alpha, 0.0, 1.0)


def matting_trimap(silhouette: np.ndarray, d: np.ndarray, tol: float, p: ReferenceParams) -> np.ndarray:
    """Trimap (1 object, 0 background, 0.5 unknown) for the matting, from the object's silhouette
    (hole-filled) and ``d``, each pixel's colour distance to the background (LAB, ~Delta E).

    Known object: the silhouette's inside (eroded by the band) where the colour is surely not the
    background's (``d > fg_tol``: faint, see-through parts stay unknown). Known background:
    outside the silhouette grown by the band, and the open holes, pieces of background the
    object encloses (a mug handle's hole): plain components of background colour (``d < tol``)
    in the silhouette, of at least ``hole_min_frac`` of its area, mostly surrounded by solid
    object (``hole_solid_ring``; a glass body's inside is ringed by faint edges). The rest, glass
    and soft edges included, is unknown and the matting decides.
    """
    import cv2

    h, w = silhouette.shape
    band = max(1, round(p.matte_band_frac * max(h, w)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sil = silhouette.astype(np.uint8)
    inner = cv2.erode(sil, k) > 0
    outer = cv2.dilate(sil, k) > 0
    trimap = np.full((h, w), 0.5, np.float64)
    trimap[~outer] = 0.0
    trimap[inner & (d > p.fg_tol)] = 1.0
    # a hole shows the plain background: its colour, and no texture (a pale, speckled bowl is not one)
    grad = cv2.morphologyEx(d.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    bgish = (silhouette & (d < tol) & (grad < tol)).astype(np.uint8)
    bgish = cv2.morphologyEx(bgish, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))  # thin highlights are not holes
    n, lab, stats, _ = cv2.connectedComponentsWithStats(bgish, connectivity=4)
    area = max(1, int(silhouette.sum()))
    near_object = cv2.dilate((d > tol).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    solid = d > p.fg_tol
    ring_k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < p.hole_min_frac * area:
            continue
        comp = lab == i
        ring = (cv2.dilate(comp.astype(np.uint8), ring_k) > 0) & ~comp
        # enclosed by solid object (a mug's handle): a hole; by faint edges (a glass body): see-through object
        if solid[ring].mean() >= p.hole_solid_ring:
            trimap[comp & ~near_object] = 0.0
    return trimap


def matte_alpha(rgb: np.ndarray, silhouette: np.ndarray, d: np.ndarray, tol: float, p: ReferenceParams) -> np.ndarray:
    """Alpha by closed-form matting (Levin et al. 2008, `pymatting.estimate_alpha_cf`) on the trimap
    of `matting_trimap`: see-through and reflective parts get the partial alpha their colours say."""
    from pymatting import estimate_alpha_cf

    trimap = matting_trimap(silhouette, d, tol, p)
    if not (trimap == 1.0).any() or not (trimap == 0.0).any():  # nothing to anchor the matting
        return silhouette.astype(np.float32)
    alpha = estimate_alpha_cf(rgb.astype(np.float64) / 255.0, trimap)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _smooth_background(lab: np.ndarray, border: np.ndarray) -> np.ndarray:
    """A quadratic surface in x, y per channel, least-squares fitted to the border pixels."""
    h, w = lab.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], axis=-1)
    coef, *_ = np.linalg.lstsq(basis[border], lab[border], rcond=None)
    return basis @ coef


def _clean_mask(mask: np.ndarray, min_component_frac: float, close_px: int = 0, open_px: int = 1) -> np.ndarray:
    """Keep the large components, fill holes (a glass object's inside is object too)."""
    import cv2

    m = mask.astype(np.uint8)
    if open_px > 0:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((open_px + 1, open_px + 1), np.uint8))
    if close_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1, 2 * close_px + 1))
        m = cv2.morphologyEx(np.pad(m, close_px), cv2.MORPH_CLOSE, k)[close_px:-close_px, close_px:-close_px]
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_component_frac * areas.max()) + 1
    m = np.isin(lab, keep).astype(np.uint8)
    # fill holes: flood the background from outside the image
    pad = np.pad(m, 1)
    flood = pad.copy()
    ffmask = np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ffmask, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return (m > 0) | holes


def _finish(rgb: np.ndarray, alpha: np.ndarray, method: str, p: ReferenceParams) -> Reference:
    import cv2

    on = alpha > p.alpha_threshold
    if not on.any():
        raise BadInputError("reference: no object pixels after the cut-out", "check the reference image")
    # the box holds the see-through parts too (a glass body is part of the object's size)
    ys, xs = np.nonzero(alpha > min(p.alpha_threshold, p.box_alpha_threshold))
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = int(x1 - x0), int(y1 - y0)
    fill = float(on[y0:y1, x0:x1].mean())
    crop_rgb = rgb[y0:y1, x0:x1]
    crop_a = alpha[y0:y1, x0:x1].astype(np.float32)
    s = p.max_side / max(w, h)
    if s < 1:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        crop_rgb = cv2.resize(crop_rgb, size, interpolation=cv2.INTER_AREA)
        crop_a = cv2.resize(crop_a, size, interpolation=cv2.INTER_AREA)
    # colours under soft edges: pull the object's colour outwards so that a bright/dark background
    # does not fringe the pasted edge (simple dilation-based decontamination)
    if method == "matte":
        # the object's own colours under partial alpha (glass, edges), the backdrop's taken out
        from pymatting import estimate_foreground_ml

        fg = estimate_foreground_ml(crop_rgb.astype(np.float64) / 255.0, crop_a.astype(np.float64))
        crop_rgb = np.clip(np.round(fg * 255.0), 0, 255).astype(np.uint8)
    else:
        crop_rgb = _decontaminate(crop_rgb, crop_a)
    return Reference(rgb=np.ascontiguousarray(crop_rgb), alpha=np.ascontiguousarray(np.clip(crop_a, 0, 1)),
                     aspect=w / h, size_px=(w, h), fill=fill, method=method)


def _decontaminate(rgb: np.ndarray, alpha: np.ndarray, iters: int = 3) -> np.ndarray:
    import cv2

    solid = (alpha > 0.95).astype(np.uint8)
    if solid.sum() == 0 or solid.all():
        return rgb
    out = rgb.copy()
    known = solid.copy()
    k = np.ones((3, 3), np.uint8)
    acc = out.astype(np.float32) * known[..., None]
    for _ in range(iters):
        grown = cv2.dilate(known, k)
        new = (grown > 0) & (known == 0)
        if not new.any():
            break
        s = cv2.blur(acc, (3, 3))
        c = cv2.blur(known.astype(np.float32), (3, 3))
        avg = s / np.maximum(c, 1e-6)[..., None]
        out[new] = np.clip(avg[new], 0, 255).astype(np.uint8)
        acc[new] = out[new].astype(np.float32)
        known = grown
    return out
