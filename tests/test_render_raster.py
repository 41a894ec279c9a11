"""Fast rasteriser: known geometry gives known masks, depths and normals; it matches pyrender."""

import numpy as np
import pytest

from hoi_cli.conventions import default_intrinsics
from hoi_cli.render.raster import mesh_mask, normal_map, rasterize


def plane(z=1.0, half=0.2):
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], float)
    f = np.array([[0, 2, 1], [0, 3, 2]])  # normals toward -z (the camera)
    return v, f


def sphere(center, radius=0.1, sub=4):
    import trimesh

    s = trimesh.creation.icosphere(sub, radius=radius)
    return np.asarray(s.vertices) + center, np.asarray(s.faces)


K = default_intrinsics(128, 96)


def test_plane_depth_and_normal():
    v, f = plane(1.0, 0.05)
    n, d = normal_map(v, f, K, 96, 128)
    # the plane spans x in [-0.05, 0.05] m at z=1 -> u in [64-6.4, 64+6.4] px: columns 58..69
    cols = np.nonzero(np.isfinite(d).any(0))[0]
    assert cols.min() == 58 and cols.max() == 69
    hit = np.isfinite(d)
    assert np.allclose(d[hit], 1.0, atol=1e-6)
    assert np.allclose(n[hit], [0, 0, -1], atol=1e-6)


def test_back_face_culled_and_mask_both_sides():
    v, f = plane(1.0, 0.05)
    _, d = normal_map(v, f[:, ::-1], K, 96, 128)  # facing away
    assert not np.isfinite(d).any()
    assert mesh_mask(v, f[:, ::-1], K, 96, 128).sum() == mesh_mask(v, f, K, 96, 128).sum() > 0


def test_sphere_centre_normal_and_depth():
    v, f = sphere([0.0, 0.0, 1.0], 0.1, 5)
    n, d = normal_map(v, f, K, 96, 128)
    # analytic: the ray through pixel (48, 64)'s centre (64.5, 48.5) hits the sphere at p
    c = np.array([0.0, 0.0, 1.0])
    ray = np.array([(64.5 - K[0, 2]) / K[0, 0], (48.5 - K[1, 2]) / K[1, 1], 1.0])
    a, b, cc = ray @ ray, -2 * ray @ c, c @ c - 0.01
    s = (-b - np.sqrt(b * b - 4 * a * cc)) / (2 * a)
    p = s * ray
    assert d[48, 64] == pytest.approx(p[2], abs=5e-4)
    assert np.allclose(n[48, 64], (p - c) / 0.1, atol=0.01)
    # a pixel right of centre: normal tilts to +x (OpenCV x right)
    assert n[48, 70, 0] > 0.2
    # a pixel below centre: normal tilts to +y (OpenCV y down)
    assert n[54, 64, 1] > 0.2


def test_nearer_surface_wins_and_layers_are_independent():
    v1, f1 = plane(1.0, 0.05)
    v2, f2 = plane(0.5, 0.01)
    V = np.concatenate([v1, v2])
    F = np.concatenate([f1, f2 + 4])
    fr = rasterize(V, F, K, 96, 128, face_layer=np.array([0, 0, 1, 1]), n_layers=2)
    d = fr.depth_maps()
    assert np.isfinite(d[0]).sum() > np.isfinite(d[1]).sum() > 0
    assert np.allclose(d[0][np.isfinite(d[0])], 1.0)  # layer 0 is whole, not cut by layer 1
    assert np.allclose(d[1][np.isfinite(d[1])], 0.5)


@pytest.mark.slow
def test_matches_pyrender():
    pytest.importorskip("pyrender")
    from hoi_cli.render.pyr import Renderer

    v, f = sphere([0.03, 0.02, 0.8], 0.12, 4)
    n, d = normal_map(v, f, K, 96, 128)
    try:
        r = Renderer(128, 96)
    except Exception as exc:  # no EGL here
        pytest.skip(f"pyrender/EGL unavailable: {exc}")
    with r:
        n2, d2 = r.render(v, f, K)
    m, m2 = np.isfinite(d), np.isfinite(d2)
    assert (m ^ m2).sum() <= 3
    both = m & m2
    assert np.abs(d[both] - d2[both]).max() < 1e-4
    assert np.abs(n[both] - n2[both]).max() < 0.02
