"""`hoi show`: a contact sheet with a column per existing stage, and a video."""

import numpy as np

from hoi_cli.render.testing import make_synthetic_run


def test_show_sheet_and_video(tmp_path):
    from hoi_cli.commands.show import make_show
    from hoi_cli.stages import layout, mlo, silhouette
    from hoi_cli.stages.base import StageContext
    from hoi_cli.video import read_image

    run = tmp_path / "run"
    make_synthetic_run(run, n_frames=3, width=96, height=64, object_radius_px=12)
    for mod, params in ((mlo, mlo.Params()), (silhouette, silhouette.Params(write_video=False)),
                        (layout, layout.Params(write_video=False))):
        out = run / mod.NAME
        out.mkdir()
        mod.run(StageContext(run, out, params))
        (out / "manifest.json").write_text("{}")
    res = make_show(run, tmp_path / "show", n_frames=2, height=64)
    assert res["stages"] == ["00_frames", "01_detect", "02_hands", "03_segment", "04_mlo", "05_silhouette", "06_layout"]
    sheet = read_image(tmp_path / "show" / "show.png")
    assert sheet.shape[0] == 2 * 64 and sheet.shape[1] == 7 * 96
    # the MLO column shows normals (non-black) where the hands are
    mlo_tile = sheet[64:, 4 * 96:5 * 96]
    assert (mlo_tile[20:].sum(-1) > 0).mean() > 0.05
    assert (tmp_path / "show" / "show.mp4").stat().st_size > 0
