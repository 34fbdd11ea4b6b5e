"""`fulldit demo` in a real browser: headless Chromium drives the page of a tiny random model.

Needs Debian's `chromium` and `chromium-driver` (or any Chrome + matching chromedriver on PATH); skipped without.
FULLDIT_SAVE_SCREENSHOT=1 runs the page with the shipped default model and the README's example conditions
instead and saves the screenshot as docs/demo-screenshot.png (slow on CPU: about a minute of sampling).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.camera import build_path, save_camera_re10k
from fulldit.demo import Demo
from fulldit.generate import Pipeline
from tests.conftest import randomize, tiny_config

ROOT = Path(__file__).resolve().parent.parent
FOR_DOCS = bool(os.environ.get("FULLDIT_SAVE_SCREENSHOT"))
FRAMES = 16 if FOR_DOCS else 4  # the default model's and the tiny model's frame count
WAIT_S = 600 if FOR_DOCS else 60


def tiny_pipeline() -> Pipeline:
    torch.manual_seed(0)
    pipe = Pipeline.from_config(tiny_config())
    randomize(pipe.model)
    return pipe


# -- the page's callbacks without a browser: every bad input becomes a status line, never an exception -----------


def test_bad_inputs_become_status_lines(tmp_path: Path) -> None:
    demo = Demo(tiny_pipeline())
    save_camera_re10k(build_path("orbit-left 30deg", frames=6), tmp_path / "six.txt")
    np.save(tmp_path / "nan.npy", np.full((4, 16, 16), np.nan, np.float32))
    (tmp_path / "bad.json").write_text('{"w2c": []}')
    args = dict(prompt="", preset="none", moves="", pose_file=None, convention="opencv", references=None, depth=None)
    args |= dict(first_frame=None, prefix=None, last_frame=None, frames=None, steps=1, seed=0)
    args |= dict(guidance=None, text_guidance=None)
    cases = {
        "six.txt: 6 camera poses, but the video has 4 frames": dict(pose_file=str(tmp_path / "six.txt")),
        "nan.npy: depth has non-finite values": dict(depth=str(tmp_path / "nan.npy")),
        'bad.json: missing key "intrinsics"': dict(pose_file=str(tmp_path / "bad.json")),
        "unknown camera move 'orbit-sideways'": dict(moves="orbit-sideways 30deg"),
    }
    for message, bad in cases.items():
        video, preview, files, status = demo.generate(**(args | bad))
        assert video is preview is files is None
        assert status.startswith("**Error:**") and message in status, status
        assert str(tmp_path) not in status  # the upload folder is cut, the file name stays
    plot, status = demo.show_camera("none", "", str(tmp_path / "bad.json"), "opencv", 4)
    assert plot is None and 'bad.json: missing key "intrinsics"' in status
    plot, status = demo.show_camera("none", "", str(tmp_path / "six.txt"), "opencv", 4)
    assert Path(plot).is_file() and "6 poses from six.txt, but Frames is 4: set it to 6" in status
    video, preview, files, status = demo.generate(**(args | dict(preset="orbit-left")))
    assert Path(video).is_file() and Path(preview).is_file() and status.startswith("Generated 4 frames")


def test_cli_does_not_import_gradio() -> None:
    """Gradio takes seconds to import: only `fulldit demo` may pay for it."""
    code = "import sys; from fulldit.cli import build_parser; build_parser(); assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# -- the real browser --------------------------------------------------------------------------------------------


def browser() -> tuple[str, str] | None:
    """(chromium binary, chromedriver) from PATH, or None."""
    exe = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    return (exe, driver) if exe and driver else None


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    found = browser()
    if found is None:
        pytest.skip("no chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(arg)
    d = webdriver.Chrome(service=webdriver.ChromeService(executable_path=found[1]), options=options)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def server(driver: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo served on a free port: the shipped model for the docs screenshot, else a tiny random checkpoint."""
    from fulldit.demo import launch

    ckpt = ROOT / "checkpoints" / "default"
    if not FOR_DOCS:
        ckpt = tmp_path_factory.mktemp("demo") / "tiny"
        tiny_pipeline().save_pretrained(ckpt)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(ckpt, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def upload(driver, elem_id: str, path: Path) -> None:
    """Hand a file to the upload field of the component `elem_id`, as a drop would."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def wait_for(driver, css: str, text: str = "", timeout: float = 30) -> object:
    """The first element matching `css` (whose text contains `text`), waiting up to `timeout` seconds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: object) -> object:
        return next((e for e in d.find_elements(By.CSS_SELECTOR, css) if text in e.text), False)

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(found, f"no {css!r} with text {text!r}")


def test_bad_camera_file_shows_error(driver, server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    bad = tmp_path / "broken_cam.txt"
    bad.write_text("https://example.com/video\n0 0.5 0.5 0.5 0.5 0 0 1 0 0\n")
    driver.get(server)
    wait_for(driver, "#generate")
    upload(driver, "camera-file", bad)
    wait_for(driver, "#status", "broken_cam.txt:2: expected 19 numbers")
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(driver, "#status", "Error: broken_cam.txt:2: expected 19 numbers")
    assert not driver.find_elements(By.CSS_SELECTOR, "#video video")


def test_generate_in_browser(driver, server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    cam = ROOT / "examples" / "orbit.txt"
    if not FOR_DOCS:
        cam = tmp_path / "orbit.txt"
        save_camera_re10k(build_path("orbit-left 30deg", frames=FRAMES), cam)
    start = time.perf_counter()
    driver.get(server)
    wait_for(driver, "#generate")
    if FOR_DOCS:
        prompt = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
        prompt.send_keys("a red and white striped sphere on a checkered floor")
        upload(driver, "depth", ROOT / "examples" / "depth.npz")
        upload(driver, "first", ROOT / "examples" / "first_frame.png")
    upload(driver, "camera-file", cam)
    wait_for(driver, "#plot img")  # the camera path is drawn as soon as the file is in
    wait_for(driver, "#status", f"Camera: {FRAMES} poses from {cam.name}")
    upload(driver, "refs", ROOT / "examples" / "reference.png")
    wait_for(driver, "#refs", "reference")  # the file is listed once uploaded ("Reference images" is the label)
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    wait_for(driver, "#video video", timeout=WAIT_S)
    wait_for(driver, "#status", f"Generated {FRAMES} frames")
    wait_for(driver, "#preview img")
    wait_for(driver, "#downloads", ".mp4")
    print(f"browser round trip {time.perf_counter() - start:.1f} s")

    time.sleep(1.0)  # let the video show its first frame
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, int(height) + 200)  # the whole page, no scrolling
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "demo-screenshot.png"
    driver.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    if FOR_DOCS:
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "demo-screenshot.png")
