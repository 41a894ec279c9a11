"""04_mlo: geometry of the layers, occlusion confidence, the encoding, and fast == pyrender."""

import json

import numpy as np
import pytest

from hoi_cli.conventions import MLO_LAYERS, decode_normals, default_intrinsics
from hoi_cli.stages import mlo
from hoi_cli.stages.base import StageContext

K = default_intrinsics(128, 96)


def quad(z, x0, x1, y0, y1):
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)
    return v, np.array([[0, 2, 1], [0, 3, 2]])


def comp(v, f, layer):
    from hoi_cli.render.raster import vertex_normals

    return mlo.Component(v, f, vertex_normals(v, f), np.full(len(f), layer))


def test_layer_order_documented():
    assert MLO_LAYERS[0] == "object" and len(MLO_LAYERS) == 13
    assert MLO_LAYERS[1:7] == tuple(f"left_{p}" for p in ("palm", "thumb", "index", "middle", "ring", "pinky"))


def test_confidence_finger_behind_object_low_in_front_high():
    obj = comp(*quad(0.50, -0.05, 0.05, -0.05, 0.05), mlo.OBJECT_LAYER)
    behind = comp(*quad(0.55, -0.01, 0.01, -0.04, 0.04), MLO_LAYERS.index("right_index"))  # 5 cm behind
    front = comp(*quad(0.45, 0.02, 0.03, -0.04, 0.04), MLO_LAYERS.index("left_thumb"))  # 5 cm in front
    lp = mlo.render_layers_raster([obj, behind, front], K, 96, 128)
    f = mlo.decode_frame(mlo.encode_frame(lp, margin=0.01, tau=0.002))
    ri, lt = MLO_LAYERS.index("right_index"), MLO_LAYERS.index("left_thumb")
    assert f["confidence"][ri][f["depth"][ri] > 0].max() <= 2  # hidden finger: ~0
    assert f["confidence"][lt][f["depth"][lt] > 0].min() >= 250  # front finger: ~1
    # the object is visible except under the front finger
    oc = f["confidence"][0][f["depth"][0] > 0]
    assert (oc >= 250).mean() > 0.8 and (oc <= 2).any()
    # occlusion-free: the hidden finger's normals and depth are still there
    assert np.allclose(f["depth"][ri][f["depth"][ri] > 0], 0.55, atol=1e-3)
    n = decode_normals(f["normals"][ri][f["depth"][ri] > 0])
    assert np.allclose(n, [0, 0, -1], atol=0.01)
    assert np.allclose(f["scene_depth"][48, 64], 0.5, atol=1e-3)


def test_confidence_function():
    assert mlo.occlusion_confidence(0.5, 0.5, 0.01, 0.002) > 0.99
    assert mlo.occlusion_confidence(0.5, 0.49, 0.01, 0.002) == pytest.approx(0.5)
    assert mlo.occlusion_confidence(0.5, 0.47, 0.01, 0.002) < 0.01


def test_proxy_object_is_a_hemisphere():
    from hoi_cli.render.scene import proxy_object_mesh

    yy, xx = np.mgrid[0:96, 0:128]
    mask = (xx + 0.5 - 64) ** 2 + (yy + 0.5 - 48) ** 2 <= 20 ** 2
    v, f = proxy_object_mesh(mask, K, 0.5, stride=2, anchor="rim")
    lp = mlo.render_layers_raster([comp(v, f, 0)], K, 96, 128)
    d = mlo.decode_frame(mlo.encode_frame(lp, 0.01, 0.002))
    r = 20 * 0.5 / K[0, 0]  # radius in metres
    assert float(d["depth"][0][48, 64]) == pytest.approx(0.5 - r, abs=4e-3)
    n = decode_normals(d["normals"][0][48, 64])
    assert n[2] < -0.99
    assert decode_normals(d["normals"][0][48, 80])[0] > 0.5  # right side faces +x


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from hoi_cli.testing import make_synthetic_run

    run = tmp_path_factory.mktemp("mlo") / "run"
    gt = make_synthetic_run(run, n_frames=2, width=160, height=128, object_radius_px=25)
    return run, gt


def _run(run, name, **kw):
    out = run.parent / name
    out.mkdir()
    summary = mlo.run(StageContext(run, out, mlo.Params(**kw)))
    return out, summary


def test_stage_outputs_and_loader(synthetic_run):
    from hoi_cli.render.raster import mesh_mask

    run, gt = synthetic_run
    out, summary = _run(run, "fast")
    assert all(v == 2 for v in summary["frames_with_layer"].values())
    (run / "04_mlo").symlink_to(out)
    data = mlo.load_mlo(run)
    assert data["normals"].shape == (2, 13, 128, 160, 3) and data["normals"].dtype == np.uint8
    assert data["depth"].dtype == np.float16
    # the union of a hand's part layers is that hand's (front-facing) silhouette
    for slot in range(2):
        parts = (data["depth"][0, 1 + 6 * slot:7 + 6 * slot] > 0).any(0)
        sil = mesh_mask(gt.vertices[0, slot], gt.faces, gt.K, 128, 160)
        assert (parts & sil).sum() / (parts | sil).sum() > 0.98
    assert json.loads((out / "layers.json").read_text())["layers"] == list(MLO_LAYERS)


@pytest.mark.slow
def test_fast_path_matches_pyrender(synthetic_run):
    pytest.importorskip("pyrender")
    run, _ = synthetic_run
    fast, _ = _run(run, "fast2")
    try:
        ref, _ = _run(run, "ref", backend="pyrender")
    except Exception as exc:
        pytest.skip(f"pyrender/EGL unavailable: {exc}")
    for t in range(2):
        a = mlo.decode_frame(np.load(fast / "mlo" / f"{t:06d}.npz"))
        b = mlo.decode_frame(np.load(ref / "mlo" / f"{t:06d}.npz"))
        ma, mb = a["depth"] > 0, b["depth"] > 0
        assert (ma ^ mb).sum() <= 0.01 * ma.sum()
        both = ma & mb
        dn = np.abs(a["normals"][both].astype(int) - b["normals"][both].astype(int))
        assert np.percentile(dn, 99) <= 3
        dd = np.abs(a["depth"][both].astype(float) - b["depth"][both].astype(float))
        assert np.percentile(dd, 99) < 1e-3
        dc = np.abs(a["confidence"][both].astype(int) - b["confidence"][both].astype(int))
        assert np.percentile(dc, 99) <= 8
