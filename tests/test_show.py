"""`hoi show`: a contact sheet with a column per existing stage, and a video."""

import numpy as np

from hoi_cli.testing import make_synthetic_run
from hoi_cli.video import read_video


def test_show_sheet_and_video(tmp_path):
    from hoi_cli.commands.show import make_show
    from hoi_cli.stages import layout, mlo, silhouette
    from hoi_cli.stages.base import StageContext
    from hoi_cli.video import read_image

    run = tmp_path / "run"
    make_synthetic_run(run, n_frames=3, width=96, height=64, object_radius_px=12, square_box_px=128)
    for mod, params in ((mlo, mlo.Params()), (silhouette, silhouette.Params(write_video=False)),
                        (layout, layout.Params(write_video=False))):
        out = run / mod.NAME
        out.mkdir()
        mod.run(StageContext(run, out, params))
        (out / "manifest.json").write_text("{}")
    res = make_show(run, tmp_path / "show", n_frames=2, tile_width=192, columns=4)
    # the story first (frame, masks), then the other stages in pipeline order
    assert res["stages"] == ["00_frames", "03_segment", "01_detect", "02_hands", "04_mlo", "05_silhouette", "06_layout"]
    sheet = read_image(tmp_path / "show" / "show.png")
    # a header row of labels, then one row per frame; a 44-px column of frame labels, then 7 panels
    tile_w = 192
    tile_h = round(tile_w * 64 / 96)
    assert sheet.shape[:2] == (22 + 2 * tile_h, 44 + 7 * tile_w)
    # the MLO column shows normals (non-black) where the hands are
    mlo_tile = sheet[22 + tile_h:, 44 + 4 * tile_w:44 + 5 * tile_w]
    assert (mlo_tile[tile_h // 3:].sum(-1) > 0).mean() > 0.05
    # the video: a grid of 4 columns x 2 rows of labelled 192-px panels, every frame
    video, _ = read_video(tmp_path / "show" / "show.mp4")
    h = 2 * (22 + 128) + 2
    assert video.shape == (3, h + h % 2, 4 * 192, 3)


def test_show_finds_the_generated_video_beside_the_run(tmp_path):
    import json

    from hoi_cli.commands.show import find_generated, make_show
    from hoi_cli.video import write_video

    run = tmp_path / "run"
    make_synthetic_run(run, n_frames=3, width=96, height=64, object_radius_px=12, square_box_px=128)
    assert find_generated(run) is None
    frames = np.zeros((3, 64, 96, 3), np.uint8)
    frames[..., 2] = 200  # a blue "generated" clip
    write_video(tmp_path / "gen.mp4", list(frames), 10.0)
    (tmp_path / "gen.json").write_text(json.dumps({"run": {"path": str(run.resolve())}}))
    (tmp_path / "other.json").write_text(json.dumps({"run": {"path": "/elsewhere"}}))
    assert find_generated(run) == tmp_path / "gen.mp4"
    res = make_show(run, tmp_path / "show", n_frames=1, tile_width=96, columns=4)
    assert res["stages"][:3] == ["00_frames", "03_segment", "generated"]
    video, _ = read_video(tmp_path / "show" / "show.mp4")
    panel = video[0, 22 + 8:22 + 56, 2 * 96 + 8:3 * 96 - 8]  # the generated panel: blue
    assert panel[..., 2].mean() > 150 and panel[..., 0].mean() < 60
