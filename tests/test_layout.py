"""06_layout: exact box pixels, channel order, missing boxes."""

import json

import numpy as np

from hoi_cli.stages import layout
from hoi_cli.stages.base import StageContext


def test_integer_box_pixels_exact():
    m = layout.draw_layout(np.array([[[10, 20, 30, 40]]], np.float32), 64, 64)[0, 0]
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 20, 39)
    assert m.sum() == 20 * 20 * 255


def test_fractional_and_clipped_boxes():
    # centre rule: column j is in iff x0 <= j + 0.5 < x1
    m = layout.draw_layout(np.array([[[9.6, 0.4, 12.5, 2.6], [-5, -5, 3, 3]]], np.float32), 8, 16)[0]
    assert np.nonzero(m[0].any(0))[0].tolist() == [10, 11]
    assert np.nonzero(m[0].any(1))[0].tolist() == [0, 1, 2]
    assert m[1, :3, :3].all() and m[1].sum() == 9 * 255


def test_stage(tmp_path):
    run = tmp_path / "run"
    (run / "00_frames").mkdir(parents=True)
    (run / "01_detect").mkdir()
    T, H, W = 3, 48, 64
    (run / "00_frames" / "meta.json").write_text(json.dumps({"n_frames": T, "height": H, "width": W, "fps": 5}))
    sq = np.full((T, 2, 4), np.nan, np.float32)
    sq[:, 0] = [2, 4, 18, 20]
    sq[1, 1] = [40, 10, 56, 26]
    obj = np.tile(np.array([20, 20, 44, 40], np.float32), (T, 1))
    np.savez(run / "01_detect" / "detections.npz", hand_boxes_square=sq, object_boxes=obj)
    for s in ("00_frames", "01_detect"):
        (run / s / "manifest.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    layout.run(StageContext(run, out, layout.Params(object_box_from="detect", write_video=False)))
    (run / "06_layout").symlink_to(out)
    lay = layout.load_layout(run)["layout"]
    assert lay.shape == (T, 3, H, W) and lay.dtype == np.uint8
    assert lay[0, 0, 4:20, 2:18].all() and lay[0, 0].sum() == 16 * 16 * 255
    assert lay[0, 1].sum() == 0 and lay[1, 1, 10:26, 40:56].all()  # right hand only in frame 1
    assert lay[2, 2, 20:40, 20:44].all() and lay[2, 2].sum() == 20 * 24 * 255
