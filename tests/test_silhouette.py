"""05_silhouette: the HOI structure covers exactly the hand meshes' silhouettes united with the object mask."""

import numpy as np

from hoi_cli.render.raster import mesh_mask
from hoi_cli.testing import make_synthetic_run
from hoi_cli.stages import silhouette
from hoi_cli.stages.base import StageContext


def test_structure_iou_against_union_mask(tmp_path):
    run = tmp_path / "run"
    gt = make_synthetic_run(run, n_frames=2, width=160, height=128, object_radius_px=25)
    out = tmp_path / "out"
    out.mkdir()
    silhouette.run(StageContext(run, out, silhouette.Params(write_video=False)))
    (run / "05_silhouette").symlink_to(out)
    d = silhouette.load_silhouette(run)
    for t in range(2):
        hands = [mesh_mask(gt.vertices[t, s], gt.faces, gt.K, 128, 160) for s in range(2)]
        union = hands[0] | hands[1] | gt.object[t]
        drawn = d["structure"][t].any(-1)
        iou = (drawn & union).sum() / (drawn | union).sum()
        assert iou > 0.999, iou
        lab = d["labels"][t]
        assert (lab == 3).sum() == gt.object[t].sum()  # object on top, exactly its mask
        assert np.all(d["structure"][t][lab == 3] == silhouette.Params().object_color)
        left_only = hands[0] & ~hands[1] & ~gt.object[t]
        assert np.all(lab[left_only] == 1)
        # texture-stripped: hands are grey (R = G = B), brighter where facing the camera
        hp = d["structure"][t][(lab == 1) | (lab == 2)]
        assert np.all(hp[:, 0] == hp[:, 1]) and hp[:, 0].min() >= 64
