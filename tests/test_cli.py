"""The render3d command line: help, the train/eval round trip, info, synth, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from render3d.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_help_explains_every_train_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--method", "--backend", "--steps", "--out", "--resume", "--splat.strategy", "--splat.sh-degree"):
        assert option in out
    assert "default scene" in out


def test_train_then_eval_round_trip(capsys, tiny_scene_dir, tmp_path):
    run = tmp_path / "run"
    code, out, _ = run_cli(
        capsys, "train", str(tiny_scene_dir), "--steps", "30", "--out", str(run), "--backend", "torch",
        "--no-progress", "--splat.init-points", "800", "--splat.sh-degree", "1",
    )
    assert code == 0
    for name in ("checkpoint.pt", "metrics.json", "config.json"):
        assert (run / name).is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["gaussians"] == 800
    assert json.loads((run / "config.json").read_text())["splat"]["init_points"] == 800

    code, out, _ = run_cli(capsys, "eval", str(run), "--split", "val")
    assert code == 0
    evaluated = json.loads((run / "eval_val.json").read_text())
    assert evaluated["views"] == 2 and evaluated["psnr"] == pytest.approx(json.loads(out[: out.rindex("}") + 1])["psnr"])
    assert len(list((run / "renders" / "val").glob("*.png"))) == 2

    code, out, _ = run_cli(capsys, "train", "--resume", str(run), "--steps", "35", "--no-progress")
    assert code == 0 and "at step 30 of 35" in out
    assert json.loads((run / "metrics.json").read_text())["steps"] == 35


def test_info_prints_a_summary(capsys, tiny_scene_dir):
    code, out, _ = run_cli(capsys, "info", str(tiny_scene_dir))
    assert code == 0
    assert "blender" in out and "train 16, val 2, test 4" in out and "32 x 32" in out


def test_data_synth_writes_a_loadable_scene(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "synth", str(tmp_path / "s"), "--resolution", "16", "--n-train", "3", "--n-val", "1", "--n-test", "1")
    assert code == 0
    code, out, _ = run_cli(capsys, "info", str(tmp_path / "s"))
    assert "train 3, val 1, test 1" in out


def test_missing_folder_is_one_line_exit_2(capsys, tmp_path):
    missing = tmp_path / "nope"
    code, _, err = run_cli(capsys, "train", str(missing), "--no-progress")
    assert code == 2
    assert_one_line_error(err, str(missing))


@pytest.mark.parametrize("flags,field", [(["--prior-mode", "bogus"], "--prior-mode"), (["--prior-weight", "-1"], "--prior-weight")])
def test_bad_prior_options_are_one_line_exit_2(capsys, tmp_path, tiny_scene_dir, flags, field):
    code, _, err = run_cli(capsys, "train", str(tiny_scene_dir), "--prior", str(tmp_path), "--out", str(tmp_path / "run"), *flags)
    assert code == 2
    assert_one_line_error(err, field)
    assert not (tmp_path / "run").exists()


def test_unknown_format_is_one_line(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("hi")
    code, _, err = run_cli(capsys, "info", str(tmp_path / "photos"))
    assert code == 2
    assert_one_line_error(err, "photos")


def test_cuda_backend_without_gpu_is_one_line(capsys, tiny_scene_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(capsys, "train", str(tiny_scene_dir), "--backend", "cuda")
    assert code == 2
    assert_one_line_error(err, "--backend torch")


def test_damaged_checkpoint_is_one_line(capsys, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "eval", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "checkpoint.pt", "damaged")
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "elsewhere"))
    assert code == 2
    assert_one_line_error(err, "elsewhere")


def test_unknown_method_is_one_line(capsys, tiny_scene_dir):
    code, _, err = run_cli(capsys, "train", str(tiny_scene_dir), "--method", "magic")
    assert code == 2
    assert_one_line_error(err, "magic", "splat")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "render3d", "info", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert_one_line_error(result.stderr, "missing")


@pytest.mark.parametrize("change, field", [({"w": "abc"}, "w"), ({"camera_angle_x": 0}, "camera_angle_x"), ({"near": "a", "far": 5}, "near")])
def test_bad_transforms_field_is_one_line_exit_2(capsys, tmp_path, tiny_scene_dir, change, field):
    import shutil

    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene_dir, scene)
    source = scene / "transforms_train.json"
    meta = json.loads(source.read_text())
    meta.update(change, h=32)
    source.write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "info", str(scene))
    assert code == 2
    assert_one_line_error(err, str(source), field)
