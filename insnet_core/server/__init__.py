"""The analysis-server page: upload a CIF, see and download the predicted INS spectra.

Two layers, kept apart so that the physics is testable without a web stack:

* :mod:`insnet_core.server.service` (no web imports): checks an uploaded
  structure and the form's settings, runs :func:`insnet_core.predict.predict`
  for the VISION spectrum and one S(|Q|,E) map, keeps the results for download
  (bounded, in memory) and turns them into JSON for the page;
* :mod:`insnet_core.server.app` (FastAPI): the page, the JSON API, the bounds
  (upload size, concurrent work, time limit) and the static files, every one
  served by the application itself (no CDN).

``insnet serve`` starts it (uvicorn).
"""
