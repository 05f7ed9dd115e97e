"""The page in a real headless browser (Debian's Chromium, driven by Playwright).

Skipped where Chromium or Playwright is missing, except under
``INSNET_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs both), where a
missing browser fails.
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from insnet_core.server.app import create_app
from insnet_core.server.service import Limits
from server_helpers import EUO, REPO_CIF, running_server

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (os.environ.get("INSNET_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)


def _need(what):
    if os.environ.get("INSNET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is required (INSNET_REQUIRE_BROWSER=1)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright")
    if CHROMIUM is None:
        _need("Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def base_url():
    with running_server(create_app(Limits())) as url:
        yield url


def _open(browser, base_url):
    page = browser.new_page(viewport={"width": 1200, "height": 1800}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"failed {req.url}"))
    page.goto(base_url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def test_upload_plot_and_download(browser, base_url, tmp_path):
    from insnet_core.io.nexus import load_nexus_processed
    page, errors = _open(browser, base_url)
    page.select_option("#instrument", "SEQUOIA")
    page.fill("#ei", "160")
    page.fill("#temperature", "5")
    page.set_input_files("#structure", str(REPO / REPO_CIF))
    page.click("#submit")
    page.wait_for_selector("body[data-state='done']", timeout=60000)
    assert "Ba3ZnRu2O9" in page.inner_text("#summary")
    assert "P6_3/m" in page.inner_text("#summary")
    # both plots drawn by the plotting library, with the data the API returned
    n_vision = page.evaluate("document.getElementById('vision-plot').data.length")
    assert n_vision >= 1 + 4 + 3  # total, elements Ba Zn Ru O, orders 1-3 (+ banks)
    # drawn |Q| across, E up: the plotted rows are energies, the workspace's are |Q|
    plot = "document.getElementById('map-plot')"
    z = np.array(page.evaluate(f"{plot}.data[0].z"), dtype=float).T
    assert "|Q|" in page.evaluate(f"{plot}.layout.xaxis.title.text")
    assert z.shape[0] > 50 and np.isnan(z).any() and np.nanmax(z) > 0
    # a contribution of the map, fetched on demand
    page.select_option("#map-part", "element:O")
    page.wait_for_selector("body[data-state='done']")
    z_o = np.array(page.evaluate("document.getElementById('map-plot').data[0].z"),
                   dtype=float).T
    assert np.nanmax(z_o) < np.nanmax(z)
    # the .nxs download reads back as the map on show
    with page.expect_download() as info:
        page.click("#download-map_nxs")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name == "Ba3ZnRu2O9_SEQUOIA.nxs"
    back = load_nexus_processed(path)
    np.testing.assert_allclose(back.values, z, rtol=1e-5, equal_nan=True)
    assert not errors, errors
    page.close()


def test_bad_upload_shows_a_message(browser, base_url, tmp_path):
    page, errors = _open(browser, base_url)
    page.click("#submit")  # empty form
    assert "Choose a CIF file" in page.inner_text("#error")
    bad = tmp_path / "EuO.cif"
    bad.write_text(EUO)
    page.select_option("#instrument", "VISION")
    page.set_input_files("#structure", str(bad))
    page.click("#submit")
    page.wait_for_selector("body[data-state='error']", timeout=60000)
    text = page.inner_text("#error")
    assert text.startswith("422") and "Eu never seen" in text
    assert page.is_hidden("#results")
    page.close()
