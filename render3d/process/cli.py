"""``render3d data process``: photos and videos in, a posed scene folder out."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Sequence

from render3d.config_cli import add_config_args, config_from_args

DESCRIPTION = (
    "Turn a folder of photos, one or more videos (mp4, mov, avi, webm, mkv), or a mix, into a posed scene folder "
    "that `render3d train OUT` reads: structure from motion with pycolmap on the CPU (no COLMAP install, nothing "
    "downloaded). Photos keep their file names and EXIF orientation; videos give --frames sharp frames each. "
    "Writes OUT/images (+ images_2/4/8), sparse/0, transforms.json and process.json; OUT appears only when complete."
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the same clean-up as Ctrl-C runs."""


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise Terminated


def cmd_process(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run :func:`render3d.process.process_capture` and print what registered and the command to train."""
    from render3d.process import ProcessConfig, process_capture

    import pycolmap  # noqa: F401  (importing it installs glog's SIGTERM crash handler: ours must come after)

    config = config_from_args(args, ProcessConfig)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        report = process_capture(args.inputs, config)
    except KeyboardInterrupt as stop:
        print(f"\nstopped by {'SIGTERM' if isinstance(stop, Terminated) else 'Ctrl-C'}; {config.out} was not written "
              "(an existing one is unchanged)", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    share = 100.0 * report.registered / report.images
    print(f"registered {report.registered} of {report.images} images ({share:.0f}%), {report.points} points, "
          f"mean reprojection error {report.reprojection_error:.2f} px, {sum(report.seconds.values()):.0f} s")
    if report.reused_features:
        print("features and matches were reused from the scene this run replaced (same images and feature options)")
    print(f"scene folder: {report.out}")
    print(f"train it with: render3d train {report.out}")
    return 0


def add_process_parser(data_sub: Any) -> None:
    """Add ``process`` to the ``render3d data`` subcommands."""
    from render3d.process.pipeline import ProcessConfig

    process = data_sub.add_parser("process", help="photos or videos -> a posed scene folder (structure from motion on the CPU)",
                                  description=DESCRIPTION)
    process.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files, video files, or folders holding them")
    process.add_argument("--out", required=True, help="scene folder to write (refused when it exists, unless --overwrite)")
    add_config_args(process, ProcessConfig, skip=("out",), title="processing")
    process.set_defaults(func=cmd_process)
