"""The interactive pages in a real browser (headless Chromium, offline): plotly draws them without script
errors and the screenshot is not blank."""

import os
import shutil
import subprocess
import sys

import pytest
from matplotlib import image

import make_sweep

RENDER = os.path.join(os.path.dirname(__file__), "..", "..", "analysis", "render.py")
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed "
                                                          "(.ci/setup-debian installs it)")


def chromium(tmp_path, page, *mode):
    """Runs headless Chromium on `page` with console messages logged to stderr."""
    profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1200,800",
               *mode, f"file://{page}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    make_sweep.write_sweep(base / "sweep.h5")
    result = subprocess.run([sys.executable, RENDER, str(base / "sweep.h5"), "--out", str(base / "out"),
                             "--prompt", "1", "--layers", "3"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return [base / "out" / "prompt_0001" / "traced_graph.html", base / "out" / "corpus_summary.html"]


@pytest.mark.parametrize("which", [0, 1])
def test_page_renders_without_script_errors(pages, tmp_path, which):
    result = chromium(tmp_path, pages[which], "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Uncaught" not in result.stderr, result.stderr[-2000:]
    # Plotly replaces the empty plot div with its SVG layers once it has drawn.
    assert 'class="main-svg"' in result.stdout
    assert 'class="scatterlayer' in result.stdout


@pytest.mark.parametrize("which", [0, 1])
def test_screenshot_is_not_blank(pages, tmp_path, which):
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, pages[which], f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (800, 1200)
    coloured = (abs(pixels - 1.0).max(axis=2) > 0.1).mean()
    assert coloured > 0.02, f"only {coloured:.2%} of the screenshot differs from white"
    assert pixels.std() > 0.05
