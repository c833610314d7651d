"""Fault tests of the safety issue: limits are checked before allocating.

Render resolutions, camera-path frame rates, mesh resolutions and step counts out of range end at once
(well under five seconds) with one ``error:`` line, before anything large is allocated or trained.
"""

from __future__ import annotations

import json
import time

import pytest

from safety_helpers import SPLAT_FLAGS, assert_one_line, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the in-process work here is tiny, one thread is faster


def test_sizes_beyond_the_limits_end_at_once_with_one_line(splat_run, tiny_scene_dir, tmp_path, capsys):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"fps": 1000, "seconds": 100000, "keyframes": [{"position": [0, 0, 3], "rotation": [1, 0, 0, 0]}]}))
    cases = [
        (["render", splat_run, "--resolution", "100000", "--no-progress"], "--resolution"),
        (["render", splat_run, "--path", path, "--no-progress"], "fps must be in (0, 240], got 1000"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "0"], "--mesh-resolution 0"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "100000"], "--mesh-resolution 100000"),
        (["export", splat_run, "--format", "mesh", "--mesh-resolution", "-5"], "--mesh-resolution -5"),
        (["train", tiny_scene_dir, "--steps", "-3", "--out", tmp_path / "never", *SPLAT_FLAGS], "--steps"),
    ]
    for args, needle in cases:
        started = time.perf_counter()
        code, _, err = run_cli(capsys, *args)
        seconds = time.perf_counter() - started
        assert code == 2, (args, err)
        assert_one_line(err, needle)
        assert seconds < 5.0, (args, seconds)
    assert not (tmp_path / "never" / "checkpoint.pt").exists()
