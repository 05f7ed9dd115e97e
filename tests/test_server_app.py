"""The analysis server over HTTP (a real uvicorn on 127.0.0.1): API, status codes, bounds."""
import concurrent.futures
import resource
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from insnet_core.server.app import create_app
from insnet_core.server.service import Limits, PredictionService
from server_helpers import EUO, NACL_PARTIAL, REPO_CIF, running_server, server_temp_dirs

REPO = Path(__file__).resolve().parents[1]
CIF = (REPO / REPO_CIF).read_bytes()


@pytest.fixture(scope="module")
def base_url():
    app = create_app(Limits(max_upload_bytes=256 * 1024, workers=2, queue=2, timeout_s=60))
    with running_server(app) as url:
        yield url


def post(url, files=None, data=None, timeout=60):
    return httpx.post(f"{url}/api/predict", files=files, data=data, timeout=timeout)


def test_page_and_its_files_are_served_locally(base_url):
    page = httpx.get(base_url + "/").text
    assert "<form" in page and 'src="/static/plotly.min.js"' in page
    assert "http://" not in page.replace('href="/openapi.json"', "") and "https://" not in page
    for name, kind in (("plotly.min.js", "javascript"), ("app.js", "javascript"),
                       ("style.css", "css")):
        r = httpx.get(f"{base_url}/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content)
    assert httpx.get(f"{base_url}/static/..%2Fapp.py").status_code == 404
    assert httpx.get(f"{base_url}/docs").status_code == 404  # Swagger UI would need a CDN
    api = httpx.get(base_url + "/openapi.json").json()
    assert "/api/predict" in api["paths"]
    assert "multipart/form-data" in api["paths"]["/api/predict"]["post"]["requestBody"]["content"]


def test_options(base_url):
    o = httpx.get(base_url + "/api/options").json()
    assert o["instruments"] == ["VISION", "SEQUOIA", "Ideal2D"]
    assert "High-Resolution" in o["chopper_packages"] and 600 in o["chopper_frequencies"]
    assert o["default_model"] in o["models"]
    assert o["limits"]["max_upload_bytes"] == 256 * 1024


def test_upload_predicts_and_downloads(base_url, tmp_path):
    from insnet_core.io.nexus import load_nexus_processed
    r = post(base_url, files={"structure": ("Ba3ZnRu2O9.cif", CIF)},
             data={"instrument": "SEQUOIA", "ei": "160", "temperature": "5"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["summary"]["formula"] == "Ba3ZnRu2O9" and j["summary"]["map_instrument"] == "SEQUOIA"
    again = httpx.get(f"{base_url}/api/results/{j['id']}").json()
    assert again["summary"] == j["summary"]
    d = httpx.get(base_url + j["downloads"]["map_nxs"])
    assert d.status_code == 200
    assert 'filename="Ba3ZnRu2O9_SEQUOIA.nxs"' in d.headers["content-disposition"]
    (tmp_path / "m.nxs").write_bytes(d.content)
    back = load_nexus_processed(tmp_path / "m.nxs")
    np.testing.assert_allclose(back.values, np.array(j["map"]["z"], dtype=float), rtol=1e-5,
                               equal_nan=True)
    part = httpx.get(f"{base_url}/api/results/{j['id']}/map",
                     params={"contribution": "element:O"}).json()
    assert len(part["z"]) == len(j["map"]["z"])
    assert httpx.get(f"{base_url}/api/results/{j['id']}/map",
                     params={"contribution": "element:Xx"}).status_code == 400
    png = httpx.get(base_url + j["downloads"]["vision_png"])
    assert png.content[:4] == b"\x89PNG"
    assert httpx.get(f"{base_url}/api/results/nope/map.nxs").status_code == 404
    assert httpx.get(f"{base_url}/api/results/{j['id']}/map.exe").status_code == 404


def test_pasted_cif_and_vision_choice(base_url):
    r = post(base_url, data={"cif": CIF.decode(), "instrument": "VISION",
                             "vision_route": "partials"}, files={"structure": ("", b"")})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["summary"]["file"] == "pasted.cif" and j["summary"]["map_instrument"] == "Ideal2D"
    assert j["summary"]["vision_route"] == "partials"


@pytest.mark.parametrize("files, data, status, words", [
    (None, None, 400, "multipart"),
    ({"structure": ("", b"")}, {}, 400, "no structure given"),
    ({"x": ("a", b"1")}, {}, 400, "unknown form field"),
    ({"structure": ("junk.cif", b"just junk\n")}, {}, 422, "CIF syntax error"),
    ({"structure": ("a.cif", NACL_PARTIAL.encode())}, {}, 422, "occupancy"),
    ({"structure": ("EuO.cif", EUO.encode())}, {}, 422, "Eu never seen"),
    ({"structure": ("a.cif", CIF)}, {"instrument": "SEQUOIA"}, 400, "incident energy"),
    ({"structure": ("a.cif", CIF)}, {"temperature": "-3"}, 400, "temperature"),
    ({"structure": ("a.cif", CIF)}, {"ei": "160", "instrument": "SEQUOIA",
                                     "chopper_package": "Nope"}, 400, "chopper"),
    ({"structure": ("a.cif", CIF)}, {"colour": "red"}, 400, "unknown form field"),
])
def test_bad_requests_get_clear_messages(base_url, files, data, status, words):
    before = server_temp_dirs()
    r = post(base_url, files=files, data=data)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert "Traceback" not in r.text and "insnet-serve-" not in r.text
    assert server_temp_dirs() == before


def test_path_traversal_name_is_only_displayed(base_url, tmp_path):
    import tempfile
    target = Path(tempfile.gettempdir()) / "insnet_traversal_probe.cif"  # where ../ would lead
    target.unlink(missing_ok=True)
    r = post(base_url, files={"structure": ("../../../../tmp/insnet_traversal_probe.cif", CIF)})
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["file"] == "insnet_traversal_probe.cif"
    assert not target.exists()


def test_50_mb_upload_is_refused_before_it_is_read(base_url):
    big = b"#" * (50 * 1024 * 1024)
    r = post(base_url, files={"structure": ("big.cif", big)})
    assert r.status_code == 413 and "too large" in r.json()["error"]


def test_time_limit_answers_504():
    svc = PredictionService(Limits(timeout_s=0.001))
    before = server_temp_dirs()
    with running_server(create_app(service=svc, warm_up=False)) as url:
        r = post(url, files={"structure": ("a.cif", CIF)})
        assert r.status_code == 504 and "longer than" in r.json()["error"]
        # the abandoned work still holds its slot until it ends, then cleans up after itself
        for _ in range(600):
            if httpx.get(url + "/api/health").json()["active"] == 0:
                break
            time.sleep(0.1)
        assert httpx.get(url + "/api/health").json()["active"] == 0
    assert server_temp_dirs() == before


def test_load_50_concurrent_uploads_bounded(base_url):
    """50 at once against 2 workers + 2 queue places: each served or refused with 503."""
    before = server_temp_dirs()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def one(i):
        try:
            r = post(base_url, files={"structure": (f"c{i}.cif", CIF)},
                     data={"instrument": "SEQUOIA", "ei": "100"}, timeout=120)
            return r.status_code, r.headers.get("retry-after"), r.json()
        except httpx.HTTPError as exc:
            return type(exc).__name__, None, None

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    codes = [c for c, _, _ in results]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 4                      # the workers and queue did serve
    assert codes.count(503) >= 1                      # and the rest were refused at once
    for code, retry, body in results:
        if code == 503:
            assert retry == "5" and "busy" in body["error"]
    health = httpx.get(base_url + "/api/health").json()
    assert health["active"] == 0 and health["results_kept"] <= 32
    assert server_temp_dirs() == before
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 1500
