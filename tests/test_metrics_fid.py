"""FID against pytorch-fid on the same frames with the same (random) weights file, and FVD's loading code."""

from __future__ import annotations

import numpy as np
import pytest

from hoi_cli.metrics import fid, fvd


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """A random-weights file in the format of pt_inception-2015-12-05-6726825d.pth."""
    import torch

    torch.manual_seed(0)
    net = fid.build_fid_inception()
    # variance-preserving random init, so that features still depend on the input after 90 layers
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("w") / fid.FID_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path


def _frames(rng, n, shift=0):
    import cv2

    x = rng.integers(0, 256, size=(n, 60, 80, 3)).astype(np.uint8)
    x = np.stack([cv2.GaussianBlur(f, (7, 7), 2) for f in x])
    return np.clip(x.astype(int) + shift, 0, 255).astype(np.uint8)


def test_frechet_distance_closed_form():
    # 1-D: (m1-m2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 1 + 1 + 4 - 4
    assert fid.frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == \
        pytest.approx(2.0)


def test_fid_features_match_pytorch_fid(fid_weights, rng, tmp_path, monkeypatch):
    """Fast check (default run): the same pool3 features as pytorch-fid's pipeline on PNG files."""
    pfi = pytest.importorskip("pytorch_fid.inception")
    from pytorch_fid import fid_score

    import torch
    from PIL import Image

    frames = _frames(rng, 3)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i:04d}.png")
    monkeypatch.setattr(pfi, "load_state_dict_from_url",
                        lambda *a, **k: torch.load(fid_weights, map_location="cpu"))
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    files = sorted(str(p) for p in tmp_path.glob("*.png"))
    want = fid_score.get_activations(files, model, batch_size=8, dims=2048, device="cpu", num_workers=0)
    got = fid.FIDFeatureExtractor(fid_weights).__call__(frames)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert got.std(axis=0).mean() > 1e-4  # the random weights do not collapse the features


@pytest.mark.slow
def test_fid_matches_pytorch_fid(fid_weights, rng, tmp_path, monkeypatch):
    """The FID number against pytorch-fid end to end (slow: its scipy sqrtm of a 2048x2048 matrix)."""
    pfi = pytest.importorskip("pytorch_fid.inception")
    from pytorch_fid import fid_score

    import torch
    from PIL import Image

    gen, ref = _frames(rng, 5, shift=30), _frames(rng, 6)
    for name, frames in (("gen", gen), ("ref", ref)):
        (tmp_path / name).mkdir()
        for i, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / name / f"{i:04d}.png")
    monkeypatch.setattr(pfi, "load_state_dict_from_url",
                        lambda *a, **k: torch.load(fid_weights, map_location="cpu"))
    # pytorch-fid's own pipeline (PNG files -> its dataset -> its InceptionV3 -> its statistics),
    # step by step as calculate_fid_given_paths does it, keeping the features for comparison
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    acts = {}
    for name in ("gen", "ref"):
        files = sorted(str(p) for p in (tmp_path / name).glob("*.png"))
        acts[name] = fid_score.get_activations(files, model, batch_size=8, dims=2048, device="cpu", num_workers=0)
    mu1, s1 = acts["gen"].mean(0), np.cov(acts["gen"], rowvar=False)
    mu2, s2 = acts["ref"].mean(0), np.cov(acts["ref"], rowvar=False)
    want = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
    want_feats = acts["ref"]

    ext = fid.FIDFeatureExtractor(fid_weights, resize="pytorch-fid", batch_size=5)
    fr = ext(ref)
    np.testing.assert_allclose(fr, want_feats, rtol=1e-4, atol=1e-5)
    got = fid.fid_from_features(ext(gen), fr)
    assert got == pytest.approx(want, rel=1e-3)
    assert got > 0


def test_fid_identical_sets_is_zero_and_clean_resize_runs(fid_weights, rng):
    frames = _frames(rng, 3)
    ext = fid.FIDFeatureExtractor(fid_weights)
    f = ext(frames)
    assert fid.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    clean = fid.FIDFeatureExtractor(fid_weights, resize="clean-fid")(frames[:2])
    assert clean.shape == (2, 2048) and np.isfinite(clean).all()
    assert not np.allclose(clean, f[:2])  # a different resize convention


# ----------------------------------------------------------------------------- FVD


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    """A tiny TorchScript with the StyleGAN-V I3D call signature (the loading code's contract)."""
    import torch

    class TinyI3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv3d(3, 8, kernel_size=3, stride=2)
            self.fc = torch.nn.Linear(8, 400)

        def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
            y = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
            return self.fc(y)

    path = tmp_path_factory.mktemp("w") / fvd.I3D_FILE
    torch.jit.save(torch.jit.script(TinyI3D()), str(path))
    return path


def test_fvd_preprocess_shape_and_range(rng):
    clip = _frames(rng, 20)
    x = fvd.preprocess_clip(clip, 16)
    assert tuple(x.shape) == (3, 16, 224, 224)
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_fvd_loading_and_distance(i3d_file, rng):
    ext = fvd.I3DFeatureExtractor(i3d_file)
    clips = [_frames(rng, 8) for _ in range(3)]
    feats = ext(clips, n_frames=8)
    assert feats.shape == (3, 400)
    assert fvd.fvd_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    other = ext([_frames(rng, 8, shift=60) for _ in range(3)], n_frames=8)
    assert fvd.fvd_from_features(other, feats) > 0


def test_fast_trace_route_equals_sqrtm_route(rng):
    for n1, n2, d in ((5, 7, 40), (80, 60, 16)):
        a = rng.normal(size=(n1, d))
        b = rng.normal(size=(n2, d)) * 1.5 + 0.3
        want = fid.frechet_distance(*fid.feature_stats(a), *fid.feature_stats(b))
        assert fid.fid_from_features(a, b) == pytest.approx(want, rel=1e-6)
