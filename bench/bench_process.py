"""``render3d data process`` on real and rendered captures: registration, camera error, time, PSNR.

    python bench/bench_process.py --data ../shared/data --out bench/results/process [--steps 1200] [--scenes fern,fox,...]

Scenes (each skipped with a note when its data is absent):
- ``fern``: 20 photos (``fern/images_4``, 1008x756) against the official LLFF poses; the
  default splat recipe trained on the processed folder (``--downscale 2``, about 500 px)
  against the official folder (``--downscale 8``, 504x378), same steps, same held-out views.
- ``fox``: 50 hand-held photos (1080x1920) against the poses in its ``transforms.json``;
  both trained at ``--downscale 4``.
- ``temple``: Middlebury templeRing, 47 photos (640x480) against the calibrated cameras.
- ``apple``: a real hand-held video (50 frames, 1296x720): frames kept, registered, a
  trained scene rendered from its middle training camera and from that camera turned 20
  and 45 degrees round the scene's up axis (``apple_views.png``).
- ``fox-video``: fox's photos encoded as a video (they were cut from one).
- ``room-video``: the textured room rendered along a hand-held-like path (200 frames, 480 px,
  known poses), encoded as a video: camera error and the time for 200 images.

Camera error: after the least-squares similarity alignment of the camera centres (see
:mod:`render3d.process.evaluate`), the median rotation error in degrees and the median
centre error in percent of the reference cameras' extent. Writes ``report.md`` (the table,
machine line and date) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import describe  # noqa: E402

from render3d.datasets import load_scene  # noqa: E402
from render3d.datasets.colmap import camera_to_world  # noqa: E402
from render3d.datasets.colmap_model import read_model  # noqa: E402
from render3d.datasets.textured_room import orbit_cameras, render_room  # noqa: E402
from render3d.process.evaluate import camera_errors, processed_poses  # noqa: E402

COLUMNS = ("scene", "input", "registered", "seconds (features / matching / mapping / all)", "rotation err (median)",
           "centre err (median, % extent)", "PSNR processed", "PSNR reference")


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def process(inputs: list[Path], out: Path, *extra: str) -> dict:
    """Run ``render3d data process``; its process.json."""
    run(["render3d", "data", "process", *map(str, inputs), "--out", str(out), "--overwrite", "--no-progress", *extra])
    return json.loads((out / "process.json").read_text())


def train_psnr(data: Path, run_dir: Path, downscale: int, steps: int, fmt: Optional[str] = None) -> float:
    """Test PSNR of the default splat recipe trained ``steps`` steps on ``data``."""
    cmd = ["render3d", "train", str(data), "--downscale", str(downscale), "--steps", str(steps), "--out", str(run_dir),
           "--overwrite", "--no-progress"]
    run(cmd + (["--data-format", fmt] if fmt else []))
    return float(json.loads((run_dir / "metrics.json").read_text())["psnr"])


def errors_against(out: Path, reference: dict[str, np.ndarray], key: Callable[[str], str] = lambda n: n) -> dict:
    """Camera error of the processed folder ``out`` against ``reference`` (image name -> OpenCV c2w)."""
    estimated = {key(name): pose for name, pose in processed_poses(out).items()}
    names = sorted(set(estimated) & set(reference))
    return camera_errors(np.stack([estimated[n] for n in names]), np.stack([reference[n] for n in names])).summary()


def scene_poses(path: Path, **kwargs) -> dict[str, np.ndarray]:
    """A loaded scene's training poses by image file name."""
    scene = load_scene(path, test_every=0, **kwargs)
    return {Path(n).name: c for n, c in zip(scene.train.names, scene.train.cameras.c2w.double().numpy())}


def row(name: str, source: str, report: dict, errors: Optional[dict], psnr: tuple[float, float] | None = None) -> dict:
    s = report["seconds"]
    pick = lambda prefix: sum(v for k, v in s.items() if k.startswith(prefix))  # noqa: E731
    return {
        "scene": name, "input": source, "registered": f"{report['registered']} / {report['images']}",
        "seconds (features / matching / mapping / all)": f"{pick('features'):.0f} / {pick('matching'):.0f} / {pick('mapping'):.0f} / {sum(s.values()):.0f}",
        "rotation err (median)": f"{errors['rotation_median_deg']:.3f} deg" if errors else "-",
        "centre err (median, % extent)": f"{errors['center_median_pct']:.3f} %" if errors else "-",
        "PSNR processed": f"{psnr[0]:.2f} dB" if psnr else "-", "PSNR reference": f"{psnr[1]:.2f} dB" if psnr and psnr[1] else "-",
    }


def encode_video(frames: list[np.ndarray], path: Path, fps: float = 10.0) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, np.stack(frames), fps=fps, codec="libx264", quality=9)


def bench_fern(data: Path, work: Path, steps: int) -> dict:
    out = work / "fern"
    report = process([data / "fern" / "images_4"], out)
    errors = errors_against(out, scene_poses(data / "fern", format="llff", downscale=4))
    psnr = (train_psnr(out, work / "fern-run", 2, steps), train_psnr(data / "fern", work / "fern-ref-run", 8, steps)) if steps else None
    return row("fern", "20 photos, 1008x756", report, errors, psnr)


def bench_fox(data: Path, work: Path, steps: int) -> dict:
    out = work / "fox"
    report = process([data / "fox" / "images"], out)
    errors = errors_against(out, scene_poses(data / "fox"))
    psnr = (train_psnr(out, work / "fox-run", 4, steps), train_psnr(data / "fox", work / "fox-ref-run", 4, steps)) if steps else None
    return row("fox", "50 photos, 1080x1920", report, errors, psnr)


def bench_temple(data: Path, work: Path, steps: int) -> dict:
    out = work / "temple"
    report = process([data / "templeRing"], out)
    gt = read_model(data / "templeRing" / "gt")
    reference = {im.name: camera_to_world(im) for im in gt.images.values()}
    return row("templeRing", "47 photos, 640x480", report, errors_against(out, reference))


def bench_apple(data: Path, work: Path, steps: int, results: Path) -> dict:
    out = work / "apple"
    report = process([data / "video" / "apple.mp4"], out)
    if steps:
        run_dir = work / "apple-run"
        psnr = train_psnr(out, run_dir, 2, steps)
        views = turned_views(run_dir, (0.0, 20.0, 45.0))
        height = min(v.shape[0] for v in views)
        Image.fromarray(np.concatenate([v[:height] for v in views], axis=1)).save(results / "apple_views.png")
        return row("apple video", "50 frames, 1296x720", report, None, (psnr, 0.0))
    return row("apple video", "50 frames, 1296x720", report, None)


def turned_views(run_dir: Path, degrees: tuple[float, ...]) -> list[np.ndarray]:
    """Renders of a processed scene's run from its middle training camera turned round the up axis (+z through the origin)."""
    import torch

    from render3d.cameras import Cameras
    from render3d.runs import load_run

    run_ = load_run(run_dir)
    cameras = run_.scene.train.cameras
    i = len(cameras.c2w) // 2
    views = []
    for angle in np.radians(degrees):
        turn = torch.eye(4, dtype=torch.float64)
        turn[:2, :2] = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        camera = Cameras(K=cameras.K[i:i + 1], c2w=(turn @ cameras.c2w[i].double())[None].float(), width=cameras.width, height=cameras.height)
        views.append((run_.model.render(camera).rgb[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return views


def bench_fox_video(data: Path, work: Path, steps: int) -> dict:
    photos = sorted((data / "fox" / "images").glob("*.jpg"))
    frames = [np.array(Image.open(p).convert("RGB")) for p in photos]
    video = work / "foxvid.mp4"
    encode_video(frames, video, fps=5)
    out = work / "fox-video"
    report = process([video], out, "--frames", str(len(frames)))
    reference = scene_poses(data / "fox")
    by_index = {f"foxvid_{i:05d}.jpg": reference[p.name] for i, p in enumerate(photos) if p.name in reference}
    return row("fox as video", f"{len(frames)} frames, 1080x1920", report, errors_against(out, by_index))


def bench_room_video(work: Path, count: int = 200, resolution: int = 480) -> dict:
    cameras = orbit_cameras(count, resolution, jitter=0.02, seed=1)
    frames = [render_room(cameras, supersample=1, index=i) for i in range(count)]
    video = work / "room.mp4"
    encode_video(frames, video, fps=30)
    out = work / "room-video"
    report = process([video], out, "--frames", str(count))
    c2w = cameras.c2w.double().numpy()
    reference = {f"room_{i:05d}.jpg": c2w[i] for i in range(count)}
    return row("room video (rendered)", f"{count} frames, {resolution}x{resolution}", report, errors_against(out, reference))


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding fern/, fox/, templeRing/, video/")
    parser.add_argument("--out", type=Path, default=Path("bench/results/process"), help="where report.md and images go")
    parser.add_argument("--work", type=Path, default=Path("/tmp/render3d-bench-process"), help="scratch folder for scenes and runs")
    parser.add_argument("--steps", type=int, default=1200, help="training steps for the PSNR columns (0: no training)")
    parser.add_argument("--scenes", default="fern,fox,temple,apple,fox-video,room-video", help="comma-separated subset")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    needs = {"fern": "fern", "fox": "fox", "temple": "templeRing", "apple": "video", "fox-video": "fox"}
    benches = {
        "fern": lambda: bench_fern(args.data, args.work, args.steps),
        "fox": lambda: bench_fox(args.data, args.work, args.steps),
        "temple": lambda: bench_temple(args.data, args.work, args.steps),
        "apple": lambda: bench_apple(args.data, args.work, args.steps, args.out),
        "fox-video": lambda: bench_fox_video(args.data, args.work, args.steps),
        "room-video": lambda: bench_room_video(args.work),
    }
    rows, notes = [], []
    for name in args.scenes.split(","):
        if name in needs and not (args.data / needs[name]).is_dir():
            notes.append(f"{name}: skipped, {args.data / needs[name]} is absent")
            continue
        start = time.time()
        rows.append(benches[name]())
        print(f"{name} done in {time.time() - start:.0f} s\n{table(rows)}", flush=True)
        text = (f"# render3d data process\n\n`python bench/bench_process.py --steps {args.steps} --scenes {args.scenes}`, "
                f"{time.strftime('%Y-%m-%d')}\n\nMachine: {machine}\n\n{table(rows)}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        (args.out / "report.md").write_text(text)
    print(table(rows))


if __name__ == "__main__":
    main()
