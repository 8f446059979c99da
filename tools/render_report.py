"""Render a `dqa-mcu report` page in headless Chromium and save it as a PNG.

    python tools/render_report.py OUT/report.html docs/report.png [--width 1200]

Needs Debian's `chromium` (apt-get install chromium). The page is shot in a
tall window and the blank space below it is cropped. docs/report.png was made
with:

    dqa-mcu export ../shared/models/resnet20_cifar10.th --arch resnet20 \\
        --calib ../shared/data/cifar10_calib.npz --calib-count 500 --bits 3 --target cortex-m7 -o r20/
    dqa-mcu report r20/ --data ../shared/data/cifar10_test.npz -n 100
    python tools/render_report.py r20/report.html docs/report.png
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW_HEIGHT = 6000  # taller than any report page; cropped afterwards
MARGIN = 16


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("render_report: no Chromium found: apt-get install chromium")


def render(page: Path, png: Path, width: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        proc = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={tmp}", f"--window-size={width},{WINDOW_HEIGHT}",
                               f"--screenshot={shot}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)
        if not shot.exists():
            sys.exit(f"render_report: Chromium made no screenshot:\n{proc.stderr[-2000:]}")
        image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image)
    used = np.flatnonzero((pixels < 250).any(axis=(1, 2)))  # rows with anything drawn on them
    bottom = min(len(pixels), int(used[-1]) + MARGIN) if len(used) else len(pixels)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.crop((0, 0, image.width, bottom)).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report's HTML file")
    parser.add_argument("png", type=Path, help="where to save the screenshot")
    parser.add_argument("--width", type=int, default=1200, help="window width in pixels")
    args = parser.parse_args()
    if not args.page.is_file():
        sys.exit(f"render_report: {args.page} does not exist (make it with dqa-mcu report OUT)")
    render(args.page, args.png, args.width)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
