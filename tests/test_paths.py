"""Camera paths: keyframe interpolation, generated paths and the JSON file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from render3d.camera_paths.framing import orbit_poses, scene_frame, spiral_poses
from render3d.camera_paths.interpolation import Keyframe, interpolate_keyframes, rotmat_to_quat
from render3d.camera_paths.path_file import CameraPath, load_path, save_path
from render3d.cameras import Cameras, intrinsics_matrix, look_at
from render3d.errors import Render3DError

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
ORIGIN = torch.zeros(3, dtype=torch.float64)


def ring_keyframes(n: int = 4) -> list[Keyframe]:
    eyes = [torch.tensor([4 * math.cos(a), 4 * math.sin(a), 1.0 + i], dtype=torch.float64) for i, a in enumerate(torch.linspace(0, 3, n).tolist())]
    return [Keyframe.from_c2w(look_at(e, ORIGIN, UP), fov=40.0 + 5 * i) for i, e in enumerate(eyes)]


def test_quaternions_round_trip_rotations():
    for eye in ([4.0, 0.0, 1.0], [0.0, 0.0, 5.0], [-1.0, -2.0, -3.0]):
        R = look_at(torch.tensor(eye, dtype=torch.float64), ORIGIN, UP)[:3, :3]
        back = Keyframe((0, 0, 0), tuple(rotmat_to_quat(R).tolist())).c2w()[:3, :3]
        torch.testing.assert_close(back, R, atol=1e-12, rtol=0)


@pytest.mark.parametrize("smoothness", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loop", [False, True])
def test_interpolation_passes_through_its_keyframes(smoothness, loop):
    keys = ring_keyframes()
    n_frames = 40 if loop else 31  # keyframes land on frames 0, 10, 20, 30
    c2w, fov = interpolate_keyframes(keys, n_frames, smoothness, loop)
    for frame, key in zip([0, 10, 20, 30], keys):
        torch.testing.assert_close(c2w[frame], key.c2w(), atol=1e-9, rtol=0)
        assert fov[frame].item() == pytest.approx(key.fov)
    rot = c2w[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(rot), atol=1e-9, rtol=0)
    steps = (c2w[1:, :3, 3] - c2w[:-1, :3, 3]).norm(dim=-1)
    assert steps.max() < 3 * steps.mean()  # no jumps


def test_keyframe_times_place_keyframes_in_time():
    keys = ring_keyframes(3)
    for key, t in zip(keys, (0.0, 1.0, 3.0)):
        key.time = t
    path = CameraPath(keys, fps=10, seconds=3.0)
    c2w, _ = path.poses()
    assert len(c2w) == 30
    # frames span [0, 3] s over 30 frames: keyframe 1 (t = 1 s) sits at frame 29 / 3
    c2w, _ = interpolate_keyframes(keys, 31, 0.5, False, seconds=3.0)
    torch.testing.assert_close(c2w[10], keys[1].c2w(), atol=1e-9, rtol=0)
    torch.testing.assert_close(c2w[30], keys[2].c2w(), atol=1e-9, rtol=0)


def test_orbit_looks_at_the_scene_center():
    eyes = torch.tensor([[4.0, 0, 2], [0, 4, 2], [-4, 0, 2], [0, -4, 2]], dtype=torch.float64) + torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    target = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    c2w = torch.stack([look_at(e, target, UP) for e in eyes]).float()
    cams = Cameras(intrinsics_matrix(50, 50, 32, 32), c2w, 64, 64)
    frame = scene_frame(cams)
    torch.testing.assert_close(frame.center, target, atol=1e-6, rtol=0)
    torch.testing.assert_close(frame.up, UP, atol=1e-6, rtol=0)
    poses = orbit_poses(frame, 12)
    to_center = target - poses[:, :3, 3]
    cosines = (to_center / to_center.norm(dim=-1, keepdim=True) * poses[:, :3, 2]).sum(-1)
    assert torch.allclose(cosines, torch.ones(12, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(to_center.norm(dim=-1), torch.full((12,), frame.radius, dtype=torch.float64), atol=1e-9)


def test_spiral_stays_near_forward_facing_cameras():
    eyes = torch.randn(10, 3, generator=torch.Generator().manual_seed(0)).double() * 0.2
    c2w = torch.stack(
        [look_at(e, torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)) for e in eyes]
    ).float()
    cams = Cameras(intrinsics_matrix(50, 50, 32, 32), c2w, 64, 64)
    poses = spiral_poses(cams, (1.0, 10.0), 30)
    assert (poses[:, :3, 3].norm(dim=-1) < 1.0).all()
    assert (poses[:, 2, 2] > 0.9).all()  # still looking down +z


def test_path_file_round_trip(tmp_path):
    path = CameraPath(ring_keyframes(), fps=24, seconds=2, smoothness=0.3, loop=True, resolution=(64, 48), crop=((-1, -1, -1), (1, 1, 1)), background=(0, 0, 0))
    file = save_path(path, tmp_path / "path.json")
    back = load_path(file)
    assert back == path
    cams = back.cameras(*back.resolution)
    assert len(cams) == 48 and (cams.width, cams.height) == (64, 48)
    assert math.degrees(cams.fov_y()[0].item()) == pytest.approx(40.0, abs=1e-4)


def test_c2w_keyframes_are_accepted(tmp_path):
    c2w = look_at(torch.tensor([3.0, 0, 1], dtype=torch.float64), ORIGIN, UP)
    doc = {"keyframes": [{"c2w": c2w[:3].tolist(), "fov": 30}, {"c2w": c2w.tolist()}]}
    file = tmp_path / "c2w.json"
    file.write_text(json.dumps(doc))
    keys = load_path(file).keyframes
    torch.testing.assert_close(keys[0].c2w(), c2w, atol=1e-12, rtol=0)
    assert keys[1].fov == 50.0


KEY = {"position": [0, 0, 0], "rotation": [1, 0, 0, 0]}

BAD_PATHS = {
    "not json": ("{keyframes: ", "not valid JSON"),
    "no keyframes": ({"fps": 30}, "keyframes must be a non-empty list"),
    "short position": ({"keyframes": [{"position": [0, 0], "rotation": [1, 0, 0, 0]}]}, r"keyframes\[0\].position must be a list of 3 numbers"),
    "string rotation": ({"keyframes": [{"position": [0, 0, 0], "rotation": "up"}]}, r"keyframes\[0\].rotation must be a list of 4"),
    "zero quaternion": ({"keyframes": [{"position": [0, 0, 0], "rotation": [0, 0, 0, 0]}]}, "zero quaternion"),
    "bad fps": ({"fps": -1, "keyframes": [{"position": [0, 0, 0], "rotation": [1, 0, 0, 0]}]}, r"fps must be in \(0, 240\]"),
    "bad crop": ({"crop": [[1, 1, 1], [0, 0, 0]], "keyframes": [{"position": [0, 0, 0], "rotation": [1, 0, 0, 0]}]}, "crop min"),
    "not a rotation": ({"keyframes": [{"c2w": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}]}, "does not hold a rotation"),
    "mixed times": (
        {"keyframes": [{"position": [0, 0, 0], "rotation": [1, 0, 0, 0], "time": 0}, {"position": [1, 0, 0], "rotation": [1, 0, 0, 0]}]},
        "every keyframe or to none",
    ),
    "bad version": ({"version": 9, "keyframes": []}, "version 9 is not supported"),
    "fps too high": ({"fps": 1000, "keyframes": [KEY]}, r"fps must be in \(0, 240\]"),
    "fps a huge integer": ({"fps": 10**400, "keyframes": [KEY]}, "fps must be a finite number"),
    "seconds too long": ({"seconds": 7200, "keyframes": [KEY]}, r"seconds must be in \(0, 3600\]"),
    "too many frames": ({"fps": 240, "seconds": 1000, "keyframes": [KEY]}, "240000 frames"),
    "resolution zero": ({"resolution": [0, 10], "keyframes": [KEY]}, r"resolution\[0\] must be a whole number in \[1, 8192\]"),
    "resolution too large": ({"resolution": [640, 10000], "keyframes": [KEY]}, r"resolution\[1\] must be a whole number in \[1, 8192\]"),
    "resolution fractional": ({"resolution": [640.5, 480], "keyframes": [KEY]}, r"resolution\[0\] must be a whole number"),
    "NaN in an unknown field": ({"note": {"weights": [1, float("nan")]}, "keyframes": [KEY]}, r"note.weights\[1\] is NaN or infinite"),
    "infinite keyframe time": ({"keyframes": [{**KEY, "time": float("inf")}]}, r"keyframes\[0\].time is NaN or infinite"),
    "keyframes not a list of objects": ({"keyframes": [[0, 0, 0]]}, r"keyframes\[0\] must be an object"),
    "position too far": ({"keyframes": [{**KEY, "position": [0, 1e300, 0]}]}, r"keyframes\[0\].position\[1\] must be in \[-1e\+09, 1e\+09\]"),
    "fov too narrow": ({"keyframes": [{**KEY, "fov": 1e-300}]}, r"keyframes\[0\].fov must be between 0.01 and 180 degrees"),
    "c2w translation too far": ({"keyframes": [{"c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1e12]]}]}, r"keyframes\[0\].c2w translation\[2\] must be in"),
}


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_bad_path_json_gets_a_clear_one_line_error(tmp_path, case):
    doc, message = BAD_PATHS[case]
    file = tmp_path / "bad path.json"
    file.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(Render3DError, match=message) as err:
        load_path(file)
    text = str(err.value)
    assert "\n" not in text and str(file) in text


def test_missing_path_file_is_a_clear_error(tmp_path):
    with pytest.raises(Render3DError, match="no camera path file"):
        load_path(tmp_path / "nope.json")
    with pytest.raises(Render3DError, match="no camera path file"):
        load_path(tmp_path / ("n" * 300))  # a name the system refuses


def test_huge_quaternion_values_are_normalized(tmp_path):
    file = tmp_path / "big.json"
    file.write_text(json.dumps({"keyframes": [{"position": [0, 0, 0], "rotation": [1e200, 0, 0, 1e200]}]}))
    rotation = load_path(file).keyframes[0].rotation
    assert rotation == pytest.approx((math.sqrt(0.5), 0, 0, math.sqrt(0.5)))
