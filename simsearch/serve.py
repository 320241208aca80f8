"""``simsearch serve`` (the ``simsearch[serve]`` extra): one loaded index and embedder behind a JSON API
(FastAPI on uvicorn, documented at ``/openapi.json``) and a small web app with no build step.

Every answer comes from the same ``Index`` calls the command line makes. Reads need nothing; moving files
aside and undoing a move need the token ``serve`` prints at start-up. Files are only ever served by image
id, from paths the index holds under its roots; uploads are size-limited and decoded with the indexer's
limits.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import faiss
from fastapi import (
    Body,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from . import pages
from .errors import ImageError, InvalidArgument, SimsearchError
from .hamming import HASH_BITS
from .imageio import decode_file
from .index import Index
from .names import DUPLICATE_METHODS, LEVELS, SEARCH_METHODS
from .reads import under_roots
from .report import reason

MAX_UPLOAD = 32 * 1024 * 1024  # bytes per request
MAX_QUERIES = 64  # images per search request
THUMB_SIZE = 256
PAGE_SIZE = 20


class Service:
    """What the server holds for its whole life: the index, its embedder, and caches keyed by data version."""

    def __init__(self, index: Index, token: str, move_to: Path):
        self.index = index
        self.token = token
        self.move_to = move_to
        # one thread per request in ONNX Runtime and FAISS: concurrent requests share the cores instead of
        # contending for them (measured: benchmarks/serve_load.py)
        self.embedder = index.embedder(threads=1) if index.embedding_models() else None
        self._lock = threading.Lock()
        self._duplicates: dict[tuple, list] = {}
        self._thumbs = index.directory / "thumbnails"

    def search(self, images: list[bytes], by: str, k: int, min_similarity: float | None, tags: list[str],
               max_distance: int | None = None):
        # OpenMP's thread count belongs to the calling thread, and each request runs on a pool thread that
        # would otherwise start a team of one thread per core, spinning on the cores the other requests need
        faiss.omp_set_num_threads(1)
        method = self.index.search_method(by)
        embedder = self.embedder if method == "embedding" else None
        return method, self.index.search_many(images, by=method, k=k, min_similarity=min_similarity,
                                              max_distance=max_distance, tags=tags or None, embedder=embedder)

    def duplicates_of(self, images: list[bytes], level: str, cut: float | None):
        return self.index.duplicates_of(images, level=level, cut=cut, embedder=self.embedder)

    def duplicate_groups(self, by: str, level: str, cut: float | None, max_distance: int | None = None,
                         min_similarity: float | None = None) -> list[dict]:
        """The groups as JSON-ready dicts, computed once per data version and options."""
        key = (by, level, cut, max_distance, min_similarity, self.index.data_version)
        with self._lock:  # one computation at a time; concurrent requests wait for it
            if key not in self._duplicates:
                self._duplicates = {key: self._compute_groups(by, level, cut, max_distance, min_similarity)}
            return self._duplicates[key]

    def _compute_groups(self, by: str, level: str, cut: float | None, max_distance: int | None,
                        min_similarity: float | None) -> list[dict]:
        if by == "auto":
            return [{"keeper": image_json(pairs[0].a), "members": [pair_json(p, p.b) for p in pairs]}
                    for pairs in self.index.duplicate_pairs(level=level, cut=cut)]
        return [{"keeper": image_json(group[0]),
                 "members": [{"image": image_json(r), "score": None, "reason": by, "verified": False,
                              "transform": None} for r in group[1:]]}
                for group in self.index.duplicates(by=by, max_distance=max_distance, min_similarity=min_similarity)]

    def thumbnail(self, image_id: str) -> bytes:
        record = self.record(image_id)
        cached = self._thumbs / record.sha256[:2] / f"{record.sha256}-{THUMB_SIZE}.jpg"
        if cached.exists():
            return cached.read_bytes()
        image = decode_file(checked_path(self.index, record), max_pixels=record.max_pixels).image
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        if not self.index.read_only:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(out.getvalue())
                os.replace(tmp, cached)
            except OSError:
                pass  # a cache that cannot be written is made again next time
        return out.getvalue()

    def record(self, image_id: str | int):
        """The indexed image with this id; anything else (not a number, not in the index) is a 404."""
        if not str(image_id).isdigit():
            raise HTTPException(404, "not found")
        image_id = int(image_id)
        found = self.index.image(image_id)
        if found is None:
            raise HTTPException(404, f"no image {image_id} in the index")
        return found

    def check_token(self, given: str | None) -> None:
        if not given or not secrets.compare_digest(given.removeprefix("Bearer "), self.token):
            raise HTTPException(403, "this action needs the token simsearch serve printed at start-up "
                                     "(header Authorization: Bearer TOKEN)")

    def manifests(self) -> list[str]:
        return sorted((p.name for p in self.move_to.glob("moves-*.jsonl")), reverse=True)


def checked_path(index: Index, record) -> str:
    """The record's file, resolved, only if it lies under one of the index's roots (no link out of them)."""
    real = os.path.realpath(record.abspath)
    roots = {n: os.fsencode(os.path.realpath(root)) for n, root in enumerate(index.root_paths())}
    if not under_roots(roots, real):
        raise HTTPException(404, "not found")
    return real


def image_json(record) -> dict:
    return {"id": record.id, "path": record.path, "width": record.width, "height": record.height,
            "picture": list(record.picture), "size": record.size, "format": record.format, "sha256": record.sha256}


def pair_json(pair, image) -> dict:
    """A decided pair as the server tells it, about ``image`` (one of its two)."""
    return {"image": image_json(image), "score": round(pair.score, 4), "reason": reason(pair),
            "verified": pair.verified, "transform": pair.transform}


def match_json(match) -> dict:
    score = match.similarity if match.similarity is not None else match.distance
    return {"score": score, "image": image_json(match.image)}


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="simsearch", summary="Image similarity and duplicate search over one index.",
                  version=_version())

    @app.middleware("http")
    async def limit_uploads(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD:
            return JSONResponse({"detail": f"the request is over {MAX_UPLOAD // 2**20} MB"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(SimsearchError)
    async def library_error(_request, exc: SimsearchError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # -- the JSON API ----------------------------------------------------------------------------
    @app.post("/api/search", summary="Nearest indexed images to each uploaded image")
    def api_search(image: list[UploadFile] = File(..., description="one or more query images"),
                   by: str = Form("auto", description=f"one of {', '.join(SEARCH_METHODS)}"),
                   k: int = Form(10, ge=1, le=1000), min_similarity: float | None = Form(None, ge=-1, le=1),
                   max_distance: int | None = Form(None, ge=0, le=HASH_BITS - 1, description="hash methods"),
                   tags: list[str] = Form([], description="only images with every one of these labels")):
        return search_json(service, [_read_upload(f) for f in image], [f.filename for f in image], by, k,
                           min_similarity, _labels(tags), max_distance)

    @app.post("/api/match", summary="Indexed images that are duplicates of each uploaded image (the CLI's match)")
    def api_match(image: list[UploadFile] = File(..., description="one or more query images"),
                  level: str = Form("copy", description=f"one of {', '.join(LEVELS)}"),
                  cut: float | None = Form(None, gt=0, le=1, description="default: the level's calibrated cut")):
        return match_results_json(service, [_read_upload(f) for f in image], [f.filename for f in image], level, cut)

    @app.get("/api/images/{image_id}", summary="One indexed image, with its tags")
    def api_image(image_id: str):
        record = service.record(image_id)
        return {**image_json(record), "detections": service.index.detections(record.id)}

    @app.get("/api/images/{image_id}/thumbnail", summary=f"A JPEG thumbnail ({THUMB_SIZE} px), cached")
    def api_thumbnail(image_id: str):
        try:
            data = service.thumbnail(image_id)
        except ImageError as exc:
            raise HTTPException(404, f"cannot read the file: {exc}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/images/{image_id}/file", summary="The image file itself")
    def api_file(image_id: str):
        path = checked_path(service.index, service.record(image_id))
        if not os.path.isfile(path):
            raise HTTPException(404, "the file is no longer there")
        return FileResponse(path)

    @app.get("/api/duplicates", summary="Duplicate groups, keeper first, paged (the CLI's options)")
    def api_duplicates(by: str = Query("auto", description=f"one of {', '.join(DUPLICATE_METHODS)}"),
                       level: str = Query("copy", description=f"one of {', '.join(LEVELS)}"),
                       cut: float | None = Query(None, gt=0, le=1),
                       max_distance: int | None = Query(None, description="hash methods: Hamming distance"),
                       min_similarity: float | None = Query(None, description="embedding: cosine similarity"),
                       page: int = Query(1, ge=1), per_page: int = Query(PAGE_SIZE, ge=1, le=500)):
        return duplicates_json(service, by, level, cut, page, per_page, max_distance, min_similarity)

    @app.get("/api/clusters", summary="Every stored clustering run")
    def api_clusterings():
        return service.index.clusterings()

    @app.get("/api/clusters/{run}", summary="The clusters of one run, with their medoids and members")
    def api_clusters(run: str):
        return clusters_json(service, run)

    @app.get("/api/tags", summary="Labels and how many images hold each")
    def api_tags(min_score: float = Query(0.0, ge=0, le=1)):
        return service.index.tags(min_score=min_score)

    @app.get("/api/stats", summary="Counts and sizes of the index")
    def api_stats():
        return service.index.stats()

    @app.post("/api/moves", summary="Keep one image of a group and move the others aside (token)")
    def api_move(keeper: int = Body(...), move: list[int] = Body(...),
                 authorization: str | None = Header(None)):
        service.check_token(authorization)
        service.move_to.mkdir(parents=True, exist_ok=True)
        manifest = service.move_to / f"moves-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.jsonl"
        done = service.index.move_group(keeper, move, service.move_to, manifest)
        return {"moved": done.moved, "manifest": manifest.name,
                "skipped": [{"path": path, "reason": why} for path, why in done.skipped]}

    @app.get("/api/moves", summary="The manifests of moves made from this server, newest first")
    def api_manifests():
        return service.manifests()

    @app.post("/api/undo", summary="Move back the files a manifest records (token)")
    def api_undo(manifest: str = Body(..., embed=True), authorization: str | None = Header(None)):
        service.check_token(authorization)
        if manifest not in service.manifests():
            raise HTTPException(404, f"no manifest {manifest!r}")
        back, already = service.index.undo(service.move_to / manifest)
        return {"moved_back": back, "already_back": already}

    # -- the web app: server-rendered pages, a little JavaScript for the actions ------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(tag: list[str] = Query([])):
        return pages.search_page(service.index.tags(min_score=0.25), tag, None)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    def home_search(image: UploadFile = File(...), tags: list[str] = Form([]), k: int = Form(10, ge=1, le=100)):
        labels = _labels(tags)
        found = search_json(service, [_read_upload(image)], [image.filename], "auto", k, None, labels)
        return pages.search_page(service.index.tags(min_score=0.25), labels, found)

    @app.get("/duplicates", response_class=HTMLResponse, include_in_schema=False)
    def duplicates_view(level: str = Query("copy"), page: int = Query(1, ge=1)):
        return pages.duplicates_page(duplicates_json(service, "auto", level, None, page, PAGE_SIZE), level)

    @app.get("/clusters", response_class=HTMLResponse, include_in_schema=False)
    def clusterings_view():
        return pages.clusterings_page(service.index.clusterings())

    @app.get("/clusters/{run}", response_class=HTMLResponse, include_in_schema=False)
    def clusters_view(run: str):
        return pages.clusters_page(run, clusters_json(service, run))

    return app


def search_json(service: Service, images: list[bytes], names: list[str | None], by: str, k: int,
                min_similarity: float | None, tags: list[str], max_distance: int | None = None) -> dict:
    _check_queries(images)
    method, results = service.search(images, by, k, min_similarity, tags, max_distance)
    return {"by": method, "results": [
        {"query": name, "error": str(r.error)} if r.error is not None else
        {"query": name, "matches": [match_json(m) for m in r.matches]} for name, r in zip(names, results)]}


def match_results_json(service: Service, images: list[bytes], names: list[str | None], level: str,
                       cut: float | None) -> dict:
    _check_queries(images)
    if level not in LEVELS:
        raise HTTPException(422, f"level is one of {', '.join(LEVELS)}")
    results = service.duplicates_of(images, level, cut)
    return {"level": level, "results": [
        {"query": name, "error": str(r.error)} if r.error is not None else
        {"query": name, "duplicates": [pair_json(p, p.a) for p in r.duplicates]}
        for name, r in zip(names, results)]}


def duplicates_json(service: Service, by: str, level: str, cut: float | None, page: int, per_page: int,
                    max_distance: int | None = None, min_similarity: float | None = None) -> dict:
    if by not in DUPLICATE_METHODS or level not in LEVELS:
        raise HTTPException(422, f"by is one of {', '.join(DUPLICATE_METHODS)}; level one of {', '.join(LEVELS)}")
    groups = service.duplicate_groups(by, level, cut, max_distance, min_similarity)
    start = (page - 1) * per_page
    return {"by": by, "level": level, "total": len(groups), "page": page, "per_page": per_page,
            "pages": max(1, -(-len(groups) // per_page)), "groups": groups[start : start + per_page]}


def clusters_json(service: Service, run: str) -> list[dict]:
    out = []
    for c in service.index.clusters(run):
        members = service.index.cluster_members(run, c["cluster"])
        out.append({"cluster": c["cluster"], "size": c["size"], "mean_distance": c["mean_distance"],
                    "medoid": image_json(c["medoid"]),
                    "members": [{"image": image_json(m.image), "distance": m.distance} for m in members]})
    return out


def _check_queries(images: list[bytes]) -> None:
    if not 1 <= len(images) <= MAX_QUERIES:
        raise HTTPException(422, f"give 1 to {MAX_QUERIES} images")


def _read_upload(upload: UploadFile) -> bytes:
    data = upload.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"{upload.filename} is over {MAX_UPLOAD // 2**20} MB")
    return data


def _labels(tags: list[str]) -> list[str]:
    """Labels from repeated fields or comma-separated ones."""
    return [t.strip() for field in tags for t in field.split(",") if t.strip()]


def _version() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return version("simsearch")


def run_server(index: Index, host: str, port: int, token: str | None, move_to: Path | None, echo=print) -> None:
    """Serve ``index`` until interrupted; prints the address with the token."""
    import uvicorn  # noqa: PLC0415

    listening = _listen(host, port)
    token = token or secrets.token_urlsafe(16)
    service = Service(index, token, move_to or index.directory / "aside")
    echo(f"simsearch serving {index.directory} at http://{host}:{port}/?token={token}")
    echo(f"write actions (moves, undo) need the header Authorization: Bearer {token}")
    uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning")).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, bound before the server says where it serves: a port in use or
    an address this machine does not have is one clear error, not an address announced and then dropped."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart reuses the port
    try:
        listening.bind(address)
    except OSError as exc:
        listening.close()
        hint = "; another server is using it: choose another --port" if exc.errno == errno.EADDRINUSE else ""
        raise InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return listening


def require_serve() -> None:
    try:
        import fastapi  # noqa: F401, PLC0415
        import multipart  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError:
        raise InvalidArgument("simsearch serve needs the serve extra: pip install 'simsearch[serve]'") from None
