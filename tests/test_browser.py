"""What a learner sees: the course run's executed notebooks opened in JupyterLab in a real browser.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them) opens each notebook
the course runner saved (the ``course_run`` fixture: the whole course, tiny checkpoint, CPU profile) in JupyterLab,
waits for its kernel, and checks the rendered page: the players, the plots and the tables are there; no
stderr or error output, no widget that failed to show, nothing marked modified, no "not trusted" in the server's
log. Then the same for each notebook's static HTML export (``jupyter nbconvert --to html``, what a viewer of a
shared notebook sees). Every page is kept as a screenshot in ``$AUDIOLDM2_SCREENSHOTS`` (default: a new
temporary folder, named at the end of the test run): look at them.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Flags that work in a container as root, offline: no sandbox, no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]
WIDTH = 1300
TALLEST = 16000  # px: the most one screenshot holds (Chromium's limit is about this)
TOKEN = "course-browser-test"
# Everything the page shows, counted in one script. Lab and nbconvert's HTML share these class names.
COUNT = """
const q = (selector) => document.querySelectorAll(selector).length;
return {
  audio: q('.jp-OutputArea-output audio'),
  images: [...document.querySelectorAll('.jp-OutputArea-output img')].filter(i => i.complete && i.naturalWidth > 0).length,
  tables: q('.jp-OutputArea-output table.dataframe'),
  stderr: q('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], '
            + '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'),
  errors: q('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'),
  widget_failures: [...document.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => /Error displaying widget|Loading widget/.test(o.textContent)).length,
  dirty: q('.lm-TabBar-tab.jp-mod-dirty'),
};
"""


def _expected(notebook) -> dict:
    """What the saved notebook holds, to be found on the page: players, images, tables."""
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    html = [output.get("data", {}).get("text/html", "") for output in outputs]
    return {"audio": sum(text.count("<audio") for text in html),
            "images": sum("image/png" in output.get("data", {}) for output in outputs),
            "tables": sum(text.count('class="dataframe"') for text in html)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven by selenium, or a skip that says in one line what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no headless browser: apt-get install -y chromium chromium-driver (.ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
                                  f"--window-size={WIDTH},1000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(artefacts) -> Path:
    folder = Path(os.environ.get("AUDIOLDM2_SCREENSHOTS") or tempfile.mkdtemp(prefix="audioldm2-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    artefacts["browser screenshots (tests/test_browser.py)"] = folder
    return folder


@pytest.fixture(scope="module")
def lab(course_run, tmp_path_factory):
    """JupyterLab serving the run folder, with the run's Jupyter data (its signatures) and a fresh config."""
    home = tmp_path_factory.mktemp("lab")
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "Would you like to get notified about official Jupyter news?" over the page (and no fetch for it).
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_DATA_DIR": str(course_run.jupyter_data), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    port, log = _free_port(), home / "server.log"
    with open(log, "w") as server_log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={course_run.folder}"],
            env=env, stdout=server_log, stderr=server_log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer:\n" + log.read_text()[-3000:]
                time.sleep(0.3)
        yield url, log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _wait(driver, condition: str, what: str, timeout_s: float = 120) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(
        lambda d: d.execute_script(condition), message=f"{what} (after {timeout_s} s)")


def _screenshot(driver, scroller: str, path: Path) -> None:
    """The whole page in one picture: the window made as tall as what ``scroller`` scrolls (up to TALLEST)."""
    height = driver.execute_script(f"const s = document.querySelector({scroller!r}); return s ? s.scrollHeight : 0;")
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight + 60;")
    driver.set_window_size(WIDTH, min(max(height, 800) + chrome + 200, TALLEST))
    driver.save_screenshot(str(path))
    driver.set_window_size(WIDTH, 1000)


def _stop_kernels(url: str) -> None:
    """Shut down the kernel Lab started for the notebook just checked (each one costs memory and CPU)."""
    with urllib.request.urlopen(f"{url}/api/sessions?token={TOKEN}", timeout=30) as answer:
        sessions = json.load(answer)
    for session in sessions:
        request = urllib.request.Request(f"{url}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def _problems(name: str, seen: dict, expected: dict) -> list[str]:
    problems = [f"{name}: {seen[what]} {what} shown, {expected[what]} saved"
                for what in ("audio", "images", "tables") if seen[what] < expected[what]]
    problems += [f"{name}: {seen[what]} {what.replace('_', ' ')}" for what in ("stderr", "errors", "widget_failures")
                 if seen[what]]
    return problems


def test_jupyterlab_shows_the_players_plots_and_tables_and_no_error_or_warning(course_run, browser, lab,
                                                                               screenshots):
    url, server_log = lab
    problems, shown = [], {}
    for path in sorted(course_run.folder.glob("[0-9][0-9]_*.ipynb")):
        expected = _expected(nbformat.read(path, as_version=4))
        browser.get(f"{url}/lab/tree/{path.name}?reset&token={TOKEN}")
        # The notebook's own kernel has started and is idle (before it starts Lab shows "No Kernel", idle too):
        # Lab has written what it writes on a kernel's start (kernelspec, language_info), so a notebook that
        # needs it is now marked modified; the saved widgets (tqdm's bars) have been drawn from their state.
        _wait(browser, "const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                       "const k = document.querySelector('.jp-Toolbar-kernelName');"
                       "return !!s && s.getAttribute('data-status') === 'idle' && !!k"
                       " && !/No Kernel|^\\s*$/.test(k.textContent)"
                       " && ![...document.querySelectorAll('.jp-OutputArea-output')]"
                       "      .some(o => o.textContent.includes('Loading widget'));", f"{path.name}: kernel idle")
        _wait(browser, f"return document.querySelectorAll('.jp-OutputArea-output audio').length >= {expected['audio']}"
                       f" && document.querySelectorAll('.jp-OutputArea-output img').length >= {expected['images']};",
              f"{path.name}: its outputs rendered", timeout_s=60)
        _screenshot(browser, ".jp-WindowedPanel-outer", screenshots / f"lab-{path.stem}.png")
        seen = browser.execute_script(COUNT)
        shown[path.name] = seen
        problems += _problems(path.name, seen, expected)
        if seen["dirty"]:
            problems.append(f"{path.name}: shown as modified before any edit")
        _stop_kernels(url)
    assert not problems, "\n".join(problems) + f"\n(screenshots in {screenshots})"
    assert sum(seen["audio"] for seen in shown.values()) > 0 and sum(seen["images"] for seen in shown.values()) > 0
    assert "not trusted" not in server_log.read_text(), "the runner's signature was not accepted"


def test_the_html_export_shows_the_players_plots_and_tables_and_no_error_or_warning(course_run, browser,
                                                                                  screenshots, tmp_path):
    notebooks = sorted(course_run.folder.glob("[0-9][0-9]_*.ipynb"))
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--output-dir", str(tmp_path),
                    *map(str, notebooks)], check=True, capture_output=True, timeout=600)
    problems = []
    for path in notebooks:
        expected = _expected(nbformat.read(path, as_version=4))
        browser.get((tmp_path / f"{path.stem}.html").as_uri())
        _wait(browser, "return document.readyState === 'complete';", f"{path.name}: the HTML page loaded")
        _screenshot(browser, "html", screenshots / f"html-{path.stem}.png")
        problems += _problems(path.name, browser.execute_script(COUNT), expected)
    assert not problems, "\n".join(problems) + f"\n(screenshots in {screenshots})"
