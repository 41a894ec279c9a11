"""Reference cut-out by matting (hoi_cli.generate.reference): known alpha, measured error."""

from __future__ import annotations

import numpy as np


def _glass_on_white(seed: int = 0):
    """A product shot with known alpha: an opaque blue body with a handle enclosing a hole, and a
    see-through glass dome (alpha 0.3, greyish) on top, over a white backdrop with a light fall-off."""
    import cv2

    H, W = 220, 200
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    supersample = 4  # antialiased edges: partial alpha on every border, as a camera gives
    big = np.zeros((H * supersample, W * supersample), np.float32)
    s = supersample
    cv2.rectangle(big, (60 * s, 100 * s), (130 * s, 190 * s), 1.0, -1)  # body
    cv2.ellipse(big, (130 * s, 145 * s), (35 * s, 30 * s), 0, 0, 360, 1.0, -1)  # handle...
    cv2.ellipse(big, (130 * s, 145 * s), (20 * s, 16 * s), 0, 0, 360, 0.0, -1)  # ...with its hole
    cv2.rectangle(big, (60 * s, 100 * s), (130 * s, 190 * s), 1.0, -1)
    dome = np.zeros_like(big)
    cv2.ellipse(dome, (95 * s, 100 * s), (45 * s, 60 * s), 0, 180, 360, 0.3, -1)
    big = np.maximum(big, dome)
    alpha = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    backdrop = 246 - 10 * ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W * W / 2)
    background = np.repeat(backdrop[..., None], 3, -1)
    colour = np.where((alpha > 0.5)[..., None], np.array([40, 70, 170], np.float32),
                      np.array([120, 125, 130], np.float32))
    img = alpha[..., None] * colour + (1 - alpha[..., None]) * background
    img += np.random.default_rng(seed).normal(0, 0.8, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), alpha


def test_semi_transparent_object_alpha_error():
    from hoi_cli.generate.reference import ReferenceParams, cut_reference

    img, alpha = _glass_on_white()
    ref = cut_reference(img, ReferenceParams(max_side=1024))  # stored at full size: compare pixel for pixel
    assert ref.method == "matte"
    ys, xs = np.nonzero(alpha > 0.15)
    truth = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert ref.alpha.shape == truth.shape  # the box holds the see-through dome
    err = np.abs(ref.alpha - truth)
    assert err.mean() <= 0.05, err.mean()
    dome = (truth > 0.2) & (truth < 0.4)
    # see-through: neither opaque nor gone (its exact alpha is ambiguous: 0.3 of a grey glass
    # looks like 0.45 of a paler one, and no opaque part of that colour tells them apart)
    assert 0.15 < float(np.median(ref.alpha[dome])) < 0.6
    hole = np.zeros_like(alpha, bool)
    hole[137:154, 134:147] = True  # inside the handle's hole (right of the body)
    hole = hole[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert ref.alpha[hole].mean() < 0.05  # the hole stays open


def test_matting_off_gives_the_silhouette():
    from hoi_cli.generate.reference import ReferenceParams, cut_reference

    img, alpha = _glass_on_white()
    ref = cut_reference(img, ReferenceParams(matting=False, max_side=1024))
    assert ref.method == "grabcut"
    ys, xs = np.nonzero(alpha > 0.15)
    truth = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = min(truth.shape[0], ref.alpha.shape[0]), min(truth.shape[1], ref.alpha.shape[1])
    # the hole filled, the dome solid or gone: the error matting removes
    assert np.abs(ref.alpha[:h, :w] - truth[:h, :w]).mean() > 0.1
