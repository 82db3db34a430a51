"""The web application (Starlette): one page, its two assets and a small JSON API.

    GET  /              the page (``static/index.html``)
    GET  /app.js, /style.css
    GET  /api/form      the form's fields, the map's dots, the models and where defaults come from
    POST /api/estimate  multipart form: the answers (field keys of /api/form) and ``photo``
    GET  /healthz       {"ok": true} once the models are loaded

Every answer of the API is JSON; an input that cannot be used is a 400 (a 413 for an upload over
the cap, a 411 without a Content-Length) with ``{"error": one line naming the field, "field":
its key}``, and any other failure a 500 with one line: the server keeps serving. The assets are
read once from the package (no path comes from a request) and sent with a Content-Security-Policy
that allows nothing from another origin.
"""

from __future__ import annotations

import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.cli.serve.estimate import COVERAGE, Estimator
from shared.cli.serve.form import FormError
from shared.cli.serve.photo import MAX_PHOTO_BYTES

log = logging.getLogger(__name__)

#: The whole request body may exceed the photo's cap by this much (the other answers).
FORM_ALLOWANCE = 256 * 2**10
MAX_FIELD_BYTES = 64 * 2**10
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; "
                                "object-src 'none'; base-uri 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def error(message: str, status: int = 400, field: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status,
                        headers=SECURITY_HEADERS)


def read_assets() -> dict[str, tuple[bytes, str]]:
    """{url path: (bytes, media type)} of the page's files, shipped in ``static/``."""
    folder = resources.files("shared.cli.serve") / "static"
    return {url: (folder.joinpath(name).read_bytes(), media) for url, (name, media) in ASSETS.items()}


def form_payload(estimator: Estimator) -> dict:
    """What the page builds itself from: fields, map dots, models, and the words around them."""
    models = estimator.models
    return {"fields": estimator.form.spec(), "map": estimator.listings.map_points(),
            "centre": list(estimator.listings.centre),
            "models": {slot: {"name": b.name, "inputs": list(b.inputs)}
                       for slot, b in models.by_slot().items()},
            "listings_source": estimator.listings.source,
            "listings": int(len(estimator.listings.frame)), "coverage": COVERAGE,
            "max_photo_mb": MAX_PHOTO_BYTES // 2**20}


async def read_request(request: Request) -> tuple[dict, bytes | None]:
    """({key: text}, photo bytes or None) of a multipart request; HTTPException when it is too
    large or has no Content-Length (the body is never read without a known, bounded size)."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(411, "the request needs a Content-Length")
    if int(length) > MAX_PHOTO_BYTES + FORM_ALLOWANCE:
        raise HTTPException(413, f"Photo: the upload is {int(length) / 2**20:.1f} MB, over the "
                                 f"{MAX_PHOTO_BYTES // 2**20} MB limit")
    async with request.form(max_files=1, max_fields=200, max_part_size=MAX_FIELD_BYTES) as form:
        answers = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        upload = form.get("photo")
        photo = None
        if isinstance(upload, UploadFile) and upload.filename:
            photo = await upload.read(MAX_PHOTO_BYTES + 1)
    return answers, (photo or None)


def create_app(estimator: Estimator) -> Starlette:
    """The application around a loaded :class:`~shared.cli.serve.estimate.Estimator`."""
    assets = read_assets()
    payload = form_payload(estimator)

    async def asset(request: Request) -> Response:
        content, media = assets[request.url.path]
        return Response(content, media_type=media, headers=SECURITY_HEADERS)

    async def api_form(request: Request) -> JSONResponse:
        return JSONResponse(payload, headers=SECURITY_HEADERS)

    async def api_estimate(request: Request) -> JSONResponse:
        answers, photo = await read_request(request)
        try:
            result = await run_in_threadpool(estimator.estimate, answers, photo)
        except FormError as exc:
            return error(str(exc), 400, exc.field)
        return JSONResponse(result, headers=SECURITY_HEADERS)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "models": estimator.models.picks})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        field = "photo" if exc.status_code == 413 else ""
        return error(str(exc.detail), exc.status_code, field)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("estimate failed")
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return error(f"The estimate failed: {type(exc).__name__}: {first}", 500)

    routes = [Route(url, asset) for url in ASSETS]
    routes += [Route("/api/form", api_form), Route("/api/estimate", api_estimate, methods=["POST"]),
               Route("/healthz", healthz)]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error,
                                                         Exception: server_error})
