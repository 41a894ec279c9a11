"""Object removal: fill the object's pixels from other frames where that background is visible.

`remove_object(frames, remove_masks, keep_masks=None)` returns the clip with the masked object
replaced by background, as GenHOI's object-removed video needs.

Convention:
    ``frames (T, H, W, 3)`` uint8 RGB; ``remove_masks (T, H, W)`` bool, True = pixels to
    replace; ``keep_masks (T, H, W)`` bool or None, True = pixels that stay as they are in their
    own frame (the hands) and are never copied into another frame (they move).

Method:
1. Camera motion. Sparse optical flow (Shi-Tomasi corners + pyramidal Lucas-Kanade) on the
   pixels outside both masks gives a RANSAC homography between consecutive frames; chained,
   they map every frame into every other. If no consecutive pair moves by more than
   ``static_px`` (corner displacement), the camera is treated as static and no warping is done.
2. Temporal fill. For frame t, the other frames are warped into t's view; a masked pixel takes
   the per-channel median of the frames where that point is visible (not removed, not kept,
   inside the warped image). A static camera gives one background plate shared by all frames,
   so the fill is identical from frame to frame (no flicker).
3. The rest (background never seen in any frame) is filled with ``cv2.inpaint`` (Telea); with
   a static camera this is done once on the plate, again so that it does not flicker.
"""

from __future__ import annotations

import cv2
import numpy as np


def _consecutive_homographies(gray: np.ndarray, valid: np.ndarray, max_corners: int = 400) -> list[np.ndarray]:
    """H[t] maps frame t's pixels to frame t+1's (identity where estimation fails)."""
    out = []
    for t in range(len(gray) - 1):
        H = np.eye(3)
        pts = cv2.goodFeaturesToTrack(gray[t], max_corners, 0.01, 6, mask=valid[t].astype(np.uint8) * 255)
        if pts is not None and len(pts) >= 12:
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[t + 1], pts, None, winSize=(21, 21), maxLevel=3)
            ok = st.ravel() == 1
            if ok.sum() >= 12:
                a, b = pts[ok].reshape(-1, 2), nxt[ok].reshape(-1, 2)
                inb = np.round(b).astype(int)
                h, w = gray.shape[1:]
                inside = (inb[:, 0] >= 0) & (inb[:, 0] < w) & (inb[:, 1] >= 0) & (inb[:, 1] < h)
                inside[inside] &= valid[t + 1][inb[inside, 1], inb[inside, 0]]
                a, b = a[inside], b[inside]
                if len(a) >= 12:
                    M, inl = cv2.findHomography(a, b, cv2.RANSAC, 2.0)
                    if M is not None and inl is not None and inl.sum() >= 10:
                        H = M
        out.append(H)
    return out


def _corner_motion(H: np.ndarray, w: int, h: int) -> float:
    c = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    ch = cv2.perspectiveTransform(c[None], H)[0]
    return float(np.abs(ch - c).max())


def estimate_camera_motion(frames: np.ndarray, invalid: np.ndarray | None = None,
                           static_px: float = 0.75) -> list[np.ndarray] | None:
    """Homographies ``A[t]`` mapping frame t into frame 0's view, or None for a static camera."""
    T, h, w = frames.shape[:3]
    if T < 2:
        return None
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    valid = np.ones((T, h, w), bool) if invalid is None else ~invalid
    if invalid is not None:
        valid = np.stack([cv2.erode(v.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) for v in valid])
    Hs = _consecutive_homographies(gray, valid)
    if max(_corner_motion(H, w, h) for H in Hs) <= static_px:
        return None
    A = [np.eye(3)]
    for H in Hs:  # A[t+1] = A[t] @ inv(H[t])  (t+1 -> t -> 0)
        A.append(A[-1] @ np.linalg.inv(H))
    return A


def _median_fill(stack: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over the frames where ``ok``: (values (N, 3), found (N,))."""
    vals = stack.astype(np.float32)
    vals[~ok] = np.nan
    found = ok.any(axis=0)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(vals, axis=0)
    return np.nan_to_num(med), found


def remove_object(frames: np.ndarray, remove_masks: np.ndarray, keep_masks: np.ndarray | None = None, *,
                  static_px: float = 0.75, inpaint_radius: int = 5, max_sources: int = 32) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 with the ``remove_masks`` pixels filled with background."""
    frames = np.asarray(frames)
    T, H, W = frames.shape[:3]
    rem = np.asarray(remove_masks, bool).copy()
    keep = np.zeros_like(rem) if keep_masks is None else np.asarray(keep_masks, bool)
    rem &= ~keep
    out = frames.copy()
    if not rem.any():
        return out
    # sources: not removed, not kept (hands move; a 2-px rim around both is excluded too)
    bad = np.stack([cv2.dilate((r | k).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                    for r, k in zip(rem, keep)])
    A = estimate_camera_motion(frames, bad, static_px)
    if A is None:
        # one background plate for the whole clip, from background observations only (never
        # hands or object), over the region to fill plus a margin for the inpainting's sources
        ys, xs = np.nonzero(rem.any(axis=0))
        margin = 3 * inpaint_radius + 4
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, H)
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, W)
        crop = frames[:, y0:y1, x0:x1].reshape(T, -1, 3)
        ok = ~bad[:, y0:y1, x0:x1].reshape(T, -1)
        med, found = _median_fill(crop, ok)
        plate = np.clip(np.round(med), 0, 255).astype(np.uint8).reshape(y1 - y0, x1 - x0, 3)
        hole = (~found).reshape(y1 - y0, x1 - x0).astype(np.uint8)  # never background: object or hand always
        if hole.any():
            plate = cv2.inpaint(plate, hole, inpaint_radius, cv2.INPAINT_TELEA)
        full = np.zeros((H, W, 3), np.uint8)
        full[y0:y1, x0:x1] = plate
        out[rem] = np.broadcast_to(full, frames.shape)[rem]
        return out
    for t in range(T):
        if not rem[t].any():
            continue
        ys, xs = np.nonzero(rem[t])
        order = sorted((s for s in range(T) if s != t), key=lambda s: abs(s - t))[:max_sources]
        vals = np.zeros((len(order), len(ys), 3), np.uint8)
        ok = np.zeros((len(order), len(ys)), bool)
        for i, s in enumerate(order):
            M = np.linalg.inv(A[t]) @ A[s]  # s -> 0 -> t
            warped = cv2.warpPerspective(frames[s], M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            vis = cv2.warpPerspective((~bad[s]).astype(np.uint8), M, (W, H), flags=cv2.INTER_NEAREST,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
            vals[i] = warped[ys, xs]
            ok[i] = vis[ys, xs]
        med, found = _median_fill(vals, ok)
        f = out[t]
        f[ys[found], xs[found]] = np.clip(np.round(med[found]), 0, 255).astype(np.uint8)
        if (~found).any():
            hole = np.zeros((H, W), bool)
            hole[ys[~found], xs[~found]] = True
            # kept pixels (hands) are not background: hide them from the inpainting's sources too
            guard = bad[t] & ~rem[t]
            filled = cv2.inpaint(f, (hole | guard).astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)
            f[hole] = filled[hole]
    return out
