"""The analysis server's web application (FastAPI): one page and a JSON API.

Routes
------
``GET /``                               the page (upload, settings, plots, downloads)
``GET /static/<file>``                  its script, style and the plotting library
``GET /api/options``                    instruments, chopper settings, models, limits
``POST /api/predict``                   multipart form: ``structure`` (file) or ``cif``
                                        (text), ``instrument``, ``temperature``, ``ei``,
                                        ``chopper_package``, ``chopper_frequency``,
                                        ``model``, ``vision_route`` → result JSON
``GET /api/results/<id>``               the result JSON again
``GET /api/results/<id>/map``           the map of one contribution (``?contribution=``)
``GET /api/results/<id>/<which>.<fmt>`` download: which = vision | map,
                                        fmt = nxs | csv | png (``?contribution=``)
``GET /api/health``                     liveness and the work in progress
``GET /openapi.json``                   the API's OpenAPI description

Errors are JSON ``{"error": message}`` with 400 (bad settings or form),
404 (unknown result), 413 (upload too large), 422 (the structure cannot be
used: junk, unsupported element, partial occupancy, too many atoms),
503 + ``Retry-After`` (all workers and queue places busy) and 504 (time limit).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from insnet_core import InputError, __version__
from insnet_core.defaults import VISION_ROUTES
from insnet_core.server.service import (DOWNLOAD_FORMATS, Limits, PredictionService,
                                        parse_form)

__all__ = ["create_app", "Admission"]

log = logging.getLogger("insnet.server")

_STATIC = Path(__file__).resolve().parent / "static"
_OWN_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_FORM_FIELDS = ("instrument", "temperature", "ei", "chopper_package", "chopper_frequency",
                "model", "vision_route", "cif")
#: settings problems are 400; these words mark a problem with the structure itself (422)
_SETTING_KEYS = ("instrument:", "temperature:", "ei:", "chopper_package:",
                 "chopper_frequency:", "vision_route:", "model:")


class Admission:
    """Counts requests in work or waiting; refuses beyond ``workers + queue``."""

    def __init__(self, workers, queue):
        self.capacity = int(workers) + int(queue)
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_enter(self):
        with self._lock:
            if self.active >= self.capacity:
                return False
            self.active += 1
            self.peak = max(self.peak, self.active)
            return True

    def leave(self, *_):
        with self._lock:
            self.active -= 1


def _error(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _plotly_js():
    """Path of the plotting library's script, as its Python wheel ships it."""
    try:
        path = resources.files("plotly") / "package_data" / "plotly.min.js"
    except ModuleNotFoundError:
        return None
    path = Path(str(path))
    return path if path.is_file() else None


async def _read_body(request, limit):
    """The request body, refused (InputError-like tuple) beyond ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_multipart(headers, body):
    async def stream():
        yield body
    parser = MultiPartParser(Headers(raw=headers.raw), stream(), max_files=1,
                             max_fields=len(_FORM_FIELDS) + 2)
    return await parser.parse()


_PREDICT_DOC = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {
                "structure": {"type": "string", "format": "binary",
                              "description": "CIF or POSCAR file (or give `cif`)"},
                "cif": {"type": "string", "description": "CIF text (instead of a file)"},
                "instrument": {"type": "string", "enum": ["VISION", "SEQUOIA", "Ideal2D"],
                               "description": "map instrument; VISION (1D) is always "
                                              "computed and shows the ideal 2D map"},
                "temperature": {"type": "number", "description": "sample temperature, K"},
                "ei": {"type": "number", "description": "SEQUOIA incident energy, meV"},
                "chopper_package": {"type": "string"},
                "chopper_frequency": {"type": "integer", "description": "Hz"},
                "model": {"type": "string"},
                "vision_route": {"type": "string", "enum": list(VISION_ROUTES)},
            }}}}},
    "responses": {"400": {"description": "bad settings or form"},
                  "413": {"description": "upload too large"},
                  "422": {"description": "the structure cannot be used"},
                  "503": {"description": "busy; retry after Retry-After seconds"},
                  "504": {"description": "the prediction ran past the time limit"}},
}


def create_app(limits=None, model=None, service=None, warm_up=True):
    """The FastAPI application.

    Parameters
    ----------
    limits : Limits, optional
    model : str, optional
        Default model (see :class:`PredictionService`).
    service : PredictionService, optional
        Use this one (tests); built from ``limits`` and ``model`` otherwise.
    warm_up : bool
        Load the model (and prime the engine) when the server starts.
    """
    service = service or PredictionService(limits or Limits(), model=model)
    limits = service.limits
    admission = Admission(limits.workers, limits.queue)
    executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="insnet-predict")

    @asynccontextmanager
    async def lifespan(_app):
        if warm_up:
            name = await asyncio.get_running_loop().run_in_executor(executor, service.warm_up)
            log.info("model %s loaded", name)
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="insnet analysis server", version=__version__,
                  description="Predicted inelastic neutron scattering spectra from a CIF.",
                  docs_url=None, redoc_url=None,  # both would load scripts from a CDN
                  lifespan=lifespan)
    app.state.service = service
    app.state.admission = admission

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):  # one clear line, never a traceback to the user
        log.exception("unexpected error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}): {exc}")

    # ------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(_STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name == "plotly.min.js":
            path = _plotly_js()
            if path is None:
                return _error(404, "the plotting library (plotly) is not installed")
            return FileResponse(path, media_type="text/javascript")
        if name not in _OWN_STATIC:
            return _error(404, f"no static file {name[:40]!r}")
        return FileResponse(_STATIC / name, media_type=_OWN_STATIC[name])

    # ------------------------------------------------------------ API
    @app.get("/api/health")
    async def health():
        return {"status": "ok", "version": __version__, "active": admission.active,
                "capacity": admission.capacity, "results_kept": len(service.results)}

    @app.get("/api/options")
    async def options():
        return service.options()

    @app.post("/api/predict", openapi_extra=_PREDICT_DOC)
    async def predict(request: Request):
        body = await _read_body(request, limits.max_upload_bytes)
        if body is None:
            return _error(413, f"upload too large: the limit is {limits.max_upload_bytes} "
                               "bytes")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return _error(400, "send a multipart/form-data form with a 'structure' file "
                               "or 'cif' text")
        try:
            form = await _parse_multipart(request.headers, body)
        except MultiPartException as exc:
            return _error(400, f"bad form: {exc.message}")
        unknown = sorted(set(form.keys()) - set(_FORM_FIELDS) - {"structure"})
        if unknown:
            return _error(400, f"unknown form field(s): {', '.join(unknown)[:200]}")
        upload = form.get("structure")
        fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "structure"}
        data, filename = b"", ""
        if isinstance(upload, str):  # a script sent the file's text as a plain field
            if upload.strip():
                data, filename = upload.encode("utf-8"), "structure.cif"
        elif upload is not None:
            data, filename = await upload.read(), upload.filename or ""
            await upload.close()
        if not data and fields.get("cif", "").strip():
            data, filename = fields["cif"].encode("utf-8"), "pasted.cif"
        if not data and not filename:
            return _error(400, "no structure given: upload a CIF file ('structure') or "
                               "paste its text ('cif')")
        filename = filename or "structure.cif"
        try:
            settings = parse_form(fields)
        except InputError as exc:
            return _error(400, str(exc))
        if not admission.try_enter():
            return _error(503, "the server is busy: every prediction slot is taken; "
                               "try again shortly", headers={"Retry-After": "5"})
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, service.run, data, filename, settings)
        future.add_done_callback(admission.leave)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), limits.timeout_s)
        except asyncio.TimeoutError:
            return _error(504, f"the prediction took longer than {limits.timeout_s:g} s")
        except InputError as exc:
            text = str(exc)
            status = 400 if text.startswith(_SETTING_KEYS) else 422
            return _error(status, text)
        return service.result_json(result)

    def _result(result_id):
        result = service.results.get(result_id)
        if result is None:
            return None, _error(404, f"no result {result_id[:40]!r} (results are kept for "
                                     f"{limits.result_ttl_s:g} s, the last "
                                     f"{limits.results_kept})")
        return result, None

    @app.get("/api/results/{result_id}")
    async def result_json(result_id: str):
        result, err = _result(result_id)
        return err or service.result_json(result)

    @app.get("/api/results/{result_id}/map")
    async def result_map(result_id: str, contribution: str = "total"):
        result, err = _result(result_id)
        if err:
            return err
        try:
            return service.spectrum_json(result.part("map", contribution))
        except KeyError as exc:
            return _error(400, exc.args[0])

    @app.get("/api/results/{result_id}/{which}.{fmt}")
    async def download(result_id: str, which: str, fmt: str, contribution: str = "total"):
        result, err = _result(result_id)
        if err:
            return err
        if fmt not in DOWNLOAD_FORMATS or which not in ("vision", "map"):
            return _error(404, f"no download {which[:20]}.{fmt[:10]}: use vision or map, "
                               f"and one of {', '.join(DOWNLOAD_FORMATS)}")
        loop = asyncio.get_running_loop()
        try:
            data, filename = await loop.run_in_executor(
                executor, service.download, result, which, fmt, contribution)
        except KeyError as exc:
            return _error(400, exc.args[0])
        return Response(data, media_type=DOWNLOAD_FORMATS[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    return app
