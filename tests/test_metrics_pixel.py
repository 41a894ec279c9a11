"""PSNR, SSIM and LPIPS: numbers against closed forms and reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hoi_cli.metrics import pixel


def _textured(rng, t=3, h=48, w=64):
    import cv2

    x = rng.integers(0, 256, size=(t, h, w, 3)).astype(np.uint8)
    return np.stack([cv2.GaussianBlur(f, (5, 5), 1.2) for f in x])


def test_psnr_known_constant_offset():
    ref = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    gen = ref + 5  # MSE = 25 everywhere
    expected = 10 * math.log10(255 ** 2 / 25)
    np.testing.assert_allclose(pixel.psnr_frames(gen, ref), expected, rtol=1e-12)


def test_psnr_known_noise(rng):
    ref = np.full((4, 64, 64, 3), 128, dtype=np.uint8)
    noise = rng.choice([-10, 10], size=ref.shape)  # |noise| = 10 exactly: MSE = 100
    gen = (ref.astype(int) + noise).astype(np.uint8)
    np.testing.assert_allclose(pixel.psnr_frames(gen, ref), 10 * math.log10(255 ** 2 / 100), rtol=1e-12)


def test_psnr_matches_skimage(rng):
    skm = pytest.importorskip("skimage.metrics")
    a, b = _textured(rng), _textured(rng)
    ours = pixel.psnr_frames(a, b)
    theirs = [skm.peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(b, a)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_identical_is_perfect(rng):
    a = _textured(rng)
    assert np.all(np.isinf(pixel.psnr_frames(a, a)))
    np.testing.assert_allclose(pixel.ssim_frames(a, a), 1.0, atol=1e-12)


def test_ssim_matches_skimage(rng):
    skm = pytest.importorskip("skimage.metrics")
    a = _textured(rng)
    b = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    for x, y in zip(a, b):
        ref = skm.structural_similarity(x, y, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=255)
        assert pixel.ssim_frame(x, y) == pytest.approx(ref, abs=1e-7)


def test_crop_pairs_skips_missing_boxes(rng):
    a = _textured(rng)
    boxes = np.array([[0, 0, 10, 12], [np.nan] * 4, [60, 40, 80, 60]], dtype=float)
    crops = list(pixel.crop_pairs(a, a, boxes))
    assert [t for t, _, _ in crops] == [0, 2]
    assert crops[0][1].shape == (12, 10, 3)
    assert crops[1][1].shape == (8, 4, 3)  # clipped to the 48x64 frame


# ----------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    """A random-weights AlexNet saved like torchvision's alexnet-owt-7be5be79.pth."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / pixel.ALEXNET_FILE
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_lpips_matches_lpips_package(alexnet_file, rng):
    lpips = pytest.importorskip("lpips")
    import torch

    lin = pixel.lpips_lin_path()
    ours = pixel.LPIPSAlex(alexnet_file, lin)
    a = _textured(rng, t=2, h=64, w=64)
    b = _textured(rng, t=2, h=64, w=64)
    got = ours(a, b)

    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    sd = torch.load(alexnet_file, map_location="cpu")
    for k, (lo, hi) in enumerate(pixel._ALEX_SLICES, start=1):
        sl = getattr(ref.net, f"slice{k}")
        for i in range(lo, hi):
            if f"features.{i}.weight" in sd:
                sl._modules[str(i)].weight.data.copy_(sd[f"features.{i}.weight"])
                sl._modules[str(i)].bias.data.copy_(sd[f"features.{i}.bias"])
    ref.eval()
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = ref(ta, tb).flatten().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours(a, a), 0.0, atol=1e-7)
