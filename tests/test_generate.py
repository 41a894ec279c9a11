"""hoi generate: reference cut-out, composite occlusion, the command and its JSON sidecar (synthetic data)."""

import json

import numpy as np
import pytest

from hoi_cli.errors import BadInputError


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def _ellipse(h=200, w=160, cx=80, cy=110, ax=50, ay=70):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1


def test_reference_from_rgba_uses_alpha():
    from hoi_cli.generate.reference import cut_reference

    m = _ellipse()
    img = np.zeros((200, 160, 4), np.uint8)
    img[..., :3] = (30, 120, 200)
    img[..., 3] = m * 255
    ref = cut_reference(img)
    assert ref.method == "alpha"
    assert ref.size_px == (101, 141) and abs(ref.aspect - 101 / 141) < 1e-6
    ys, xs = np.nonzero(m)
    assert _iou(ref.alpha > 0.5, m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]) > 0.99


def test_reference_on_white_grabcut_iou():
    from hoi_cli.generate.reference import cut_reference

    rng = np.random.default_rng(0)
    m = _ellipse()
    img = np.full((200, 160, 3), 245, np.uint8)
    img = np.clip(img.astype(int) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)
    yy = np.mgrid[0:200, 0:160][0]
    obj = np.stack([120 + yy // 4, 60 + yy // 5, 40 + 0 * yy], -1).astype(np.uint8)  # shaded orange
    img[m] = obj[m]
    ref = cut_reference(img)
    assert ref.method == "matte"
    full = np.zeros((200, 160), bool)
    ys, xs = np.nonzero(m)
    crop = (ref.alpha > 0.5)
    full[ys.min():ys.min() + crop.shape[0], xs.min():xs.min() + crop.shape[1]] = crop
    assert _iou(full, m) > 0.95
    assert abs(ref.aspect - 101 / 141) < 0.05


def test_reference_noise_is_a_clear_error():
    from hoi_cli.generate.reference import cut_reference

    noise = np.random.default_rng(1).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    with pytest.raises(BadInputError, match="cannot separate"):
        cut_reference(noise)


def test_reference_blank_image_is_a_clear_error():
    from hoi_cli.generate.reference import cut_reference

    with pytest.raises(BadInputError, match="cannot separate"):
        cut_reference(np.full((100, 100, 3), 250, np.uint8))


def _scene(T=6, H=64, W=96):
    """A grey background, a red 'object' square, a skin 'hand' bar across the object's left part."""
    frames = np.full((T, H, W, 3), 100, np.uint8)
    obj = np.zeros((T, H, W), bool)
    hand = np.zeros((T, H, W), bool)
    for t in range(T):
        obj[t, 20:44, 30 + t:54 + t] = True
        hand[t, 28:36, 20 + t:40 + t] = True
    frames[obj] = (200, 30, 30)
    frames[hand] = (220, 180, 150)
    obj &= ~hand  # the visible object
    hb = np.full((T, 2, 4), np.nan, np.float32)
    hb[:, 0] = [[20 + t, 28, 40 + t, 36] for t in range(T)]
    return frames, obj, hand, hb


def _blue_ref():
    from hoi_cli.generate.reference import Reference

    return Reference(rgb=np.tile(np.array([20, 40, 230], np.uint8), (40, 40, 1)), alpha=np.ones((40, 40), np.float32),
                     aspect=1.0, size_px=(40, 40), fill=1.0, method="alpha")


def test_composite_hand_in_front_stays_hand_and_object_is_replaced():
    from hoi_cli.generate.composite import CompositeParams, composite_clip

    frames, obj, hand, hb = _scene()
    p = CompositeParams(blur_sigma=0, harmonize_l=0, harmonize_ab=0, harmonize_std=0, hand_feather=0)
    res = composite_clip(frames, obj, hand, _blue_ref(), hb, params=p)
    out = res.frames
    t = 2
    # a hand pixel over the object stays exactly the hand
    assert tuple(out[t, 31, 35 + t]) == tuple(frames[t, 31, 35 + t])
    # the object's centre became the reference's blue, not red
    y, x = 40, 48 + t
    assert out[t, y, x, 2] > 180 and out[t, y, x, 0] < 80
    # no red left of the source object
    red = (out[..., 0] > 150) & (out[..., 1] < 80) & (out[..., 2] < 80)
    assert red.sum() == 0


def test_composite_without_a_stored_removal_removes_the_object_as_07_genhoi_does():
    """With no 07_genhoi result to reuse, the backend computes the object-removed frames itself: the
    same call as the stage's (`object_removal`), so both fills agree pixel for pixel."""
    from hoi_cli.generate.composite import CompositeParams, Compositor
    from hoi_cli.stages.genhoi import Params, object_removal

    frames, obj, hand, hb = _scene()
    stored, removed = object_removal(frames, obj, hand, Params().dilate_px)
    comp = Compositor(frames, obj, hand, _blue_ref(), hb, params=CompositeParams(remove_dilate_px=Params().dilate_px))
    assert np.array_equal(comp.remove, removed) and np.array_equal(comp.background, stored)


def test_composite_hand_behind_object_is_hidden_by_depth_order():
    from hoi_cli.generate.composite import CompositeParams, composite_clip

    frames, obj, hand, hb = _scene()
    behind = np.ones_like(hand)
    behind[:, :, :] = True
    behind[hand & np.roll(obj | hand, 0, axis=2)] = True
    in_front = np.ones_like(hand)
    in_front[:, 28:36, 30:] = False  # the fingers over the object are behind it (04_mlo)
    p = CompositeParams(blur_sigma=0, harmonize_l=0, harmonize_ab=0, harmonize_std=0, hand_feather=0)
    res = composite_clip(frames, obj, hand, _blue_ref(), hb, hand_in_front=in_front, params=p)
    t = 2
    px = res.frames[t, 31, 38 + t]
    assert px[2] > 180 and px[0] < 80  # the object covers the finger there
    assert tuple(res.frames[t, 31, 22 + t]) == tuple(frames[t, 31, 22 + t])  # the hand off the object stays


def _write_run(run, frames, obj, hand, hb):
    from hoi_cli.conventions import box_from_mask, pack_masks
    from hoi_cli.video import write_image

    (run / "00_frames" / "frames").mkdir(parents=True)
    for i, f in enumerate(frames):
        write_image(run / "00_frames" / "frames" / f"{i:06d}.png", f)
    T, H, W = obj.shape
    (run / "00_frames" / "meta.json").write_text(json.dumps({"fps": 10.0, "width": W, "height": H, "n_frames": T}))
    (run / "01_detect").mkdir()
    np.savez(run / "01_detect" / "detections.npz", hand_boxes=hb, hand_boxes_square=hb,
             object_boxes=np.stack([box_from_mask(m) for m in obj]).astype(np.float32),
             hand_score=np.isfinite(hb[..., 0]).astype(np.float32))
    (run / "03_segment").mkdir()
    po, shape = pack_masks(obj)
    ph, _ = pack_masks(hand)
    np.savez(run / "03_segment" / "masks.npz", object=po, hand=ph, shape=shape)
    from hoi_cli.testing import adopt_stages

    (run / "02_hands").mkdir()  # 03_segment's upstream (the composite backend does not read it)
    np.savez(run / "02_hands" / "mano.npz", valid=np.zeros((T, 2), bool))
    adopt_stages(run, ("00_frames", "01_detect", "02_hands", "03_segment"))
    return run


def test_generate_command_writes_h264_and_sidecar(tmp_path):
    import av
    from typer.testing import CliRunner

    from hoi_cli.cli import app
    from hoi_cli.video import write_image

    frames, obj, hand, hb = _scene()
    run = _write_run(tmp_path / "runs" / "clip", frames, obj, hand, hb)
    ref_path = tmp_path / "ref.png"
    rgba = np.zeros((50, 30, 4), np.uint8)
    rgba[..., :3] = (20, 200, 40)
    rgba[5:45, 5:25, 3] = 255
    write_image(ref_path, rgba)
    out = tmp_path / "gen" / "clip.mp4"
    r = CliRunner().invoke(app, ["generate", str(run), "--reference", str(ref_path), "--out", str(out),
                                 "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["ok"] and summary["frames"] == 6
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and abs(float(s.average_rate) - 10.0) < 1e-6
        assert sum(1 for _ in c.decode(s)) == 6
    side = json.loads(out.with_suffix(".json").read_text())
    from hoi_cli.store import file_digest

    assert side["backend"] == "composite"
    assert side["reference"]["sha256"] == file_digest(ref_path)
    assert side["reference"]["method"] == "alpha" and abs(side["reference"]["aspect"] - 0.5) < 1e-6
    seg = json.loads((run / "03_segment" / "manifest.json").read_text())
    assert side["run"]["stages"]["03_segment"] == {"fingerprint": seg["fingerprint"], "output_digest": seg["output_digest"]}
    assert side["run"]["stale"] == {} and side["run"]["allow_stale"] is False
    assert len(side["run"]["run_fingerprint"]) == 64
    assert side["params"]["layout"]["size_mode"] == "area" and "harmonize_l" in side["params"]["composite"]
    assert side["output"]["sha256"] == file_digest(out) and side["output"]["fps"] == 10.0
    assert len(side["layout"]["object_boxes"]) == 6
    # written away from the run folder, the run's log still leads `hoi show RUN` to it
    from hoi_cli.commands.show import find_generated

    assert find_generated(run) == out
    from hoi_cli.generate.run import _log_in_run
    from hoi_cli.store import GENERATED_LOG

    _log_in_run(run, out, out.with_suffix(".json"))  # generated again to the same path: no second line
    assert len((run / GENERATED_LOG).read_text().splitlines()) == 1
    out.unlink()  # a deleted video is no longer shown
    assert find_generated(run) is None


def test_generate_self_reenactment_and_errors(tmp_path):
    from typer.testing import CliRunner

    from hoi_cli.cli import app

    frames, obj, hand, hb = _scene()
    run = _write_run(tmp_path / "runs" / "clip", frames, obj, hand, hb)
    out = tmp_path / "self.mp4"
    r = CliRunner().invoke(app, ["generate", str(run), "--reference-from-frame", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["reference"]["method"] == "frame" and side["track"]["anchor_frame"] == 1
    # noise reference -> exit 3 and a one-line error
    from hoi_cli.video import write_image

    write_image(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8))
    r = CliRunner().invoke(app, ["generate", str(run), "--reference", str(tmp_path / "noise.png"),
                                 "--out", str(tmp_path / "n.mp4"), "--format", "json"])
    assert r.exit_code == 3
    assert json.loads(r.stdout.splitlines()[0])["ok"] is False
    r = CliRunner().invoke(app, ["generate", str(run), "--out", str(tmp_path / "x.mp4")])
    assert r.exit_code == 3  # neither --reference nor --reference-from-frame
    r = CliRunner().invoke(app, ["generate", str(run), "--reference-from-frame", "0", "--backend", "diffusion",
                                 "--out", str(tmp_path / "d.mp4")])
    assert r.exit_code == 2  # diffusion without --checkpoint


def test_generate_batch_csv(tmp_path):
    from typer.testing import CliRunner

    from hoi_cli.cli import app

    frames, obj, hand, hb = _scene()
    _write_run(tmp_path / "runs" / "clip", frames, obj, hand, hb)
    csv = tmp_path / "pairs.csv"
    csv.write_text("run,reference,out\nruns/clip,frame:0,a.mp4\nruns/clip,missing.png,\n")
    r = CliRunner().invoke(app, ["generate", "--batch", str(csv), "--out-dir", str(tmp_path / "gen"),
                                 "--format", "json", "-q"])
    assert r.exit_code == 3, r.output  # one row failed with a bad input
    doc = json.loads(r.stdout)
    assert doc["n_ok"] == 1 and doc["n_failed"] == 1
    assert (tmp_path / "gen" / "a.mp4").exists() and (tmp_path / "gen" / "a.json").exists()
