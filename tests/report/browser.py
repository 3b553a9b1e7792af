"""Open a report in a real headless Chromium: console errors, the DOM after load, a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        raise AssertionError("no chromium on PATH: run `bash scripts/setup_test_tools.sh` (scripts/setup.sh does)")
    return exe


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state between runs
        base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
                "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
        return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    """The page's console errors and uncaught exceptions in Chromium's stderr log."""
    bad = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line or "source: file://" in line):
            bad.append(line)
        elif "Uncaught" in line or "Failed to load resource" in line or "net::ERR_" in line:
            bad.append(line)
    return bad


def open_page(html_path: str, screenshot: str, width: int = 1400, height: int = 2600) -> dict:
    """``{"dom": str, "errors": [lines], "screenshot": path}`` for one page."""
    url = "file://" + os.path.abspath(html_path)
    dom = _run(["--dump-dom", url])
    shot = _run([f"--screenshot={screenshot}", f"--window-size={width},{height}", url])
    assert os.path.isfile(screenshot), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
    return {"dom": dom.stdout, "errors": console_errors(dom.stderr) + console_errors(shot.stderr),
            "screenshot": screenshot}


def pixel_stddev(png: str) -> float:
    """Standard deviation of the screenshot's grey levels (a blank page is ~0)."""
    from PIL import Image, ImageStat

    return ImageStat.Stat(Image.open(png).convert("L")).stddev[0]
