"""The HTTP API: OpenAI-shaped routes over a continuously batched Pipeline.

    POST /v1/images/generations   text -> PNG images (b64_json); `stream: true` sends SSE progress,
                                  partial images and the image
    POST /v1/chat/completions     messages (text, data-URI images) -> answer; `stream: true` sends
                                  OpenAI chat.completion.chunk events
    POST /v1/videos/generations   text (+ a GIF to extend) -> GIF (ours); a clip longer than the
                                  context is made in windows, one request after another; `stream:
                                  true` sends SSE progress per latent frame and the clip per window
    GET  /health  /metrics  /docs  /openapi.json  /  (a small web page)

Handlers never run the model: they build a job in a thread (tokenize, encode input images), submit
its requests to the worker thread that steps the model's Scheduler, await them (cancelling when the
client disconnects), and turn tokens into media in a thread. With a `reader` (an understanding model,
Emu3-Chat, beside the generation model) chat completions go to its own scheduler and worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib.resources import files

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emu3.generate.pipeline import Pipeline
from emu3.generate.scheduler import Cancelled, QueueFull, Scheduler, SchedulerStats
from emu3.serve import media, tasks
from emu3.serve.config import ServeConfig
from emu3.serve.errors import APIError, error_body, validation_error
from emu3.serve.metrics import CONTENT_TYPE, Metrics
from emu3.serve.middleware import BearerAuth, BodyLimit, Timing
from emu3.serve.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ImageGenerationRequest,
    ImageGenerationResponse,
    VideoGenerationRequest,
    VideoGenerationResponse,
)
from emu3.serve.worker import Submission, Worker

log = logging.getLogger(__name__)
ROUTES = ("/v1/images/generations", "/v1/chat/completions", "/v1/videos/generations", "/health", "/metrics", "/")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 429, 503, 504)}
POLL_S = 0.2


class ClientGone(Exception):
    """The client closed the connection; its requests were cancelled."""


class Server:
    """What the routes share: the pipelines, their workers, the limits and the metrics. `pipe` generates
    images and videos; `reader` (default: `pipe`) answers chat completions, on its own worker."""

    def __init__(self, pipe: Pipeline, cfg: ServeConfig, reader: Pipeline | None = None) -> None:
        self.pipe, self.cfg, self.limits = pipe, cfg, cfg.limits
        self.reader = reader if reader is not None else pipe
        self.metrics = Metrics()
        self.worker = self._worker(pipe)
        self.chat_worker = self.worker if self.reader is pipe else self._worker(self.reader)
        # The name chat completions report: the understanding model's, when it is not the generator.
        self.chat_model_name = cfg.model_name if self.reader is pipe else f"{cfg.model_name}-chat"

    def _worker(self, pipe: Pipeline) -> Worker:
        max_len = min(self.cfg.max_len or pipe.decoder.cfg.max_seq_len, pipe.decoder.cfg.max_seq_len)
        scheduler = Scheduler(pipe.decoder, pipe.generator.vocab, max_rows=self.cfg.max_batch, max_len=max_len,
                              max_queue=self.cfg.max_queue)  # fmt: skip
        return Worker(scheduler, on_step=lambda _s: self.metrics.sample_tokens(self.stats().tokens_generated))

    @property
    def workers(self) -> list[Worker]:
        return [self.worker] if self.chat_worker is self.worker else [self.worker, self.chat_worker]

    @property
    def max_len(self) -> int:
        return self.worker.scheduler.max_len

    def stats(self) -> SchedulerStats:
        """The schedulers' numbers added up (one scheduler per decoder)."""
        each = [w.scheduler.stats() for w in self.workers]
        return SchedulerStats(*(sum(getattr(s, f.name) for s in each) for f in fields(SchedulerStats)))

    def submit(self, requests, notify=None, worker: Worker | None = None) -> list[Submission]:
        """Submit all of a job's requests to `worker` (default: the generation model's), or none (429
        when the queue fills part-way)."""
        worker = worker or self.worker
        subs: list[Submission] = []
        try:
            for request in requests:
                subs.append(worker.submit(request, notify=notify))
        except QueueFull as err:
            for sub in subs:
                sub.cancel()
            raise APIError(429, f"the server is busy: {err}", code="rate_limit_exceeded") from None
        except ValueError as err:  # tasks check the same limits first; this is the scheduler's last word
            for sub in subs:
                sub.cancel()
            raise APIError(400, str(err), code="invalid_value") from None
        return subs

    async def wait(self, http: Request, subs: list[Submission]) -> list[list[int]]:
        """Every submission's tokens; cancels them all if the client leaves or the deadline passes."""
        futures = [asyncio.ensure_future(s.result()) for s in subs]
        deadline = time.monotonic() + self.limits.request_timeout_s
        try:
            while True:
                _, pending = await asyncio.wait(futures, timeout=POLL_S)
                if not pending:
                    return [f.result() for f in futures]
                if await http.is_disconnected():
                    self.metrics.cancelled()
                    raise ClientGone
                if time.monotonic() > deadline:
                    raise APIError(504, f"no answer within {self.limits.request_timeout_s:g} s", code="timeout")
        except Cancelled:
            raise APIError(503, "the request was cancelled: the server is shutting down", code="cancelled") from None
        finally:
            for sub, future in zip(subs, futures, strict=True):
                sub.cancel()
                future.cancel()


def build_app(pipe: Pipeline, cfg: ServeConfig | None = None, reader: Pipeline | None = None) -> FastAPI:
    """The ASGI app; the schedulers' worker threads start and stop with the app's lifespan. `reader`: an
    understanding model that answers chat completions instead of `pipe`."""
    cfg = cfg or ServeConfig()
    server = Server(pipe, cfg, reader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        for worker in server.workers:
            worker.start()
        try:
            yield
        finally:
            for worker in server.workers:
                worker.stop()

    app = FastAPI(title="Emu3", version="1", lifespan=lifespan,
                  description="Text-to-image, image chat and video generation with one next-token model.")  # fmt: skip
    app.state.server = server
    _add_error_handlers(app)
    _add_routes(app, server)
    app.openapi = lambda: _openapi(app)
    app.add_middleware(BodyLimit, max_bytes=cfg.limits.max_body_bytes)
    if cfg.api_key:
        app.add_middleware(BearerAuth, key=cfg.api_key)
    app.add_middleware(Timing, metrics=server.metrics, routes=ROUTES)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's spec without its default 422 answers: validation errors here are OpenAI-style 400s."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in spec["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas = spec.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None), schemas.pop("ValidationError", None)
        app.openapi_schema = spec
    return app.openapi_schema


# ---------------------------------------------------------------- errors


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, err: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 429 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        error = validation_error(err.errors())
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(err.status_code, str(err.detail)), status_code=err.status_code,
                            headers=getattr(err, "headers", None))  # fmt: skip

    @app.exception_handler(ClientGone)
    async def client_gone(_request: Request, _err: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; nginx's code for "client closed request"

    @app.exception_handler(Exception)
    async def server_error(_request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=err)
        return JSONResponse(error_body(500, "internal error; see the server log"), status_code=500)


# ---------------------------------------------------------------- routes


def _add_routes(app: FastAPI, server: Server) -> None:
    pipe, limits = server.pipe, server.limits
    bearer = [Depends(HTTPBearer(auto_error=False))] if server.cfg.api_key else []  # documents the scheme

    @app.post("/v1/images/generations", response_model=ImageGenerationResponse, responses=ERRORS,
              dependencies=bearer, summary="Generate images from a prompt")  # fmt: skip
    async def images(body: ImageGenerationRequest, http: Request):
        job = await run_in_threadpool(tasks.image_job, pipe, limits, body, server.max_len)
        if body.stream:  # submitted before the 200 goes out, so a full queue is still a 429
            eol = pipe.tok.special.eol
            sub = server.submit(job.requests, notify=lambda done, total, token: token == eol or done == total)[0]
            return _sse(_guarded(server, _image_events(server, sub, job, body), [sub], "image"))
        tokens = await server.wait(http, server.submit(job.requests))
        encoded = await run_in_threadpool(lambda: [media.png_base64(tasks.finish_image(pipe, job, t)) for t in tokens])
        return {"created": int(time.time()), "data": [{"b64_json": b} for b in encoded], "size": job.size}

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS, dependencies=bearer,
              summary="Answer a conversation (images as data URIs)")  # fmt: skip
    async def chat(body: ChatCompletionRequest, http: Request):
        reader, worker = server.reader, server.chat_worker
        job = await run_in_threadpool(tasks.chat_job, reader, limits, body, worker.scheduler.max_len)
        model, reply_id = server.chat_model_name, f"chatcmpl-{uuid.uuid4().hex}"  # the one that answers
        sub = server.submit([job.request], notify=(lambda *_: True) if body.stream else None, worker=worker)[0]
        if body.stream:
            return _sse(_guarded(server, _chat_chunks(server, sub, job, body, model, reply_id), [sub], "chat", None))
        (tokens,) = await server.wait(http, [sub])
        usage = {"prompt_tokens": job.prompt_tokens, "completion_tokens": len(tokens)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choice = {"index": 0, "message": {"role": "assistant", "content": tasks.answer_text(reader, tokens)},
                  "finish_reason": sub.ticket.finish_reason or "stop", "logprobs": None}  # fmt: skip
        return {"id": reply_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [choice], "usage": usage}  # fmt: skip

    @app.post("/v1/videos/generations", response_model=VideoGenerationResponse, responses=ERRORS,
              dependencies=bearer, summary="Generate a clip, or extend a GIF (ours, not OpenAI's)")  # fmt: skip
    async def videos(body: VideoGenerationRequest, http: Request):
        plan = await run_in_threadpool(tasks.plan_video, pipe, limits, body, server.max_len)
        if body.stream:  # the first window is submitted before the 200 goes out, so a full queue is a 429
            job = await run_in_threadpool(tasks.window_job, pipe, plan, 0, [])
            subs = [_submit_window(server, job)]
            return _sse(_guarded(server, _video_events(server, plan, job, subs), subs, "video"))
        made: list[np.ndarray] = []
        for k in range(len(plan.windows)):  # one after another: each window reads the frames before it
            job = await run_in_threadpool(tasks.window_job, pipe, plan, k, made)
            (tokens,) = await server.wait(http, server.submit([job.request]))
            made.append(await run_in_threadpool(tasks.finish_video, pipe, job, tokens))
        frames = tasks.clip_so_far(plan, made)
        gif = await run_in_threadpool(media.gif_base64, frames, plan.fps)
        return {"created": int(time.time()), "data": [{"b64_json": gif, "frames": len(frames)}]}

    @app.get("/health", response_model=Health, responses={503: {"model": ErrorResponse}})
    async def health():
        if not all(w.alive for w in server.workers):
            raise APIError(503, "a scheduler thread is not running", code="unavailable")
        s = server.stats()
        return {
            "status": "ok",
            "model": server.cfg.model_name,
            "chat_model": server.chat_model_name,
            "waiting": s.waiting,
            "running": s.running,
            "rows_in_use": s.rows_in_use,
            "max_rows": s.max_rows,
        }

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics():
        return PlainTextResponse(server.metrics.render(server.stats()), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(files("emu3.serve").joinpath("page.html").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- streams


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


def _event(data: dict | str, name: str | None = None) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "") + f"data: {text}\n\n"


async def _guarded(server: Server, events: AsyncIterator[str], subs: list[Submission], what: str,
                   error_event: str | None = "error") -> AsyncIterator[str]:  # fmt: skip
    """`events`, with a failure sent as a last error event (the 200 has gone out), and the stream's
    requests (`subs`, which the video stream extends window by window) cancelled if it ends before
    they do: the client left, or it failed."""
    try:
        async for event in events:
            yield event
    except APIError as err:  # e.g. a later video window found the queue full
        yield _event(err.body(), error_event)
    except Cancelled:
        yield _event(error_body(503, "the request was cancelled"), error_event)
    except Exception:
        log.exception("%s stream failed", what)
        yield _event(error_body(500, "generation failed; see the server log"), error_event)
    finally:
        await events.aclose()
        for sub in subs:
            if not sub.future.done():
                server.metrics.cancelled()
            sub.cancel()


async def _image_events(server: Server, sub: Submission, job: tasks.ImageJob, body) -> AsyncIterator[str]:
    """OpenAI's image stream (partial_image ... completed) plus our `image_generation.progress` per row."""
    pipe, eol = server.pipe, server.pipe.tok.special.eol
    n_partial = min(body.partial_images, job.height - 1)  # the last row gives the finished image
    partial_rows = {round((i + 1) * job.height / (n_partial + 1)) for i in range(n_partial)}
    created, rows, sent = int(time.time()), 0, 0
    common = {"size": job.size, "output_format": "png"}
    async for done, total, token in sub.events():
        if token != eol:
            continue
        rows += 1
        yield _event({"type": "image_generation.progress", "rows_done": rows, "rows": job.height,
                      "tokens_done": done, "tokens_total": total}, "image_generation.progress")  # fmt: skip
        if rows in partial_rows:
            image = await run_in_threadpool(tasks.partial_image, pipe, job, sub.ticket.tokens[:done])
            yield _event({"type": "image_generation.partial_image", "partial_image_index": sent,
                          "b64_json": media.png_base64(image), "created_at": created, **common},
                         "image_generation.partial_image")  # fmt: skip
            sent += 1
    tokens = await sub.result()
    image = await run_in_threadpool(tasks.finish_image, pipe, job, tokens)
    usage = {"input_tokens": len(job.requests[0].prompt), "output_tokens": len(tokens)}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    yield _event({"type": "image_generation.completed", "b64_json": media.png_base64(image),
                  "created_at": created, "usage": usage, **common}, "image_generation.completed")  # fmt: skip


def _submit_window(server: Server, job: tasks.VideoJob) -> Submission:
    """One video window, with an event at the end of each latent frame it writes."""
    eof = server.pipe.tok.special.eof
    return server.submit([job.request], notify=lambda _done, _total, token: token == eof)[0]


async def _video_events(server: Server, plan: tasks.VideoPlan, job: tasks.VideoJob, subs: list[Submission]
                        ) -> AsyncIterator[str]:  # fmt: skip
    """`video_generation.progress` at the end of each new latent frame, `video_generation.partial_video`
    (the clip so far: given frames, then the new ones) after each window but the last, then
    `video_generation.completed` with the whole clip, as the plain request returns it. `subs` holds the
    first window's submission; each later window's is added to it."""
    pipe, windows = server.pipe, len(plan.windows)
    created, made, done = int(time.time()), [], 0
    total = sum(new for _ctx, new in plan.windows)

    for k in range(windows):
        if k:  # each window reads the frames made before it
            job = await run_in_threadpool(tasks.window_job, pipe, plan, k, made)
            subs.append(_submit_window(server, job))
        sub = subs[-1]
        async for _ in sub.events():
            done += 1
            progress = {"type": "video_generation.progress", "latent_frames_done": done, "latent_frames": total,
                        "window": k, "windows": windows}  # fmt: skip
            yield _event(progress, "video_generation.progress")
        made.append(await run_in_threadpool(tasks.finish_video, pipe, job, await sub.result()))
        if k < windows - 1:
            frames = tasks.clip_so_far(plan, made)
            gif = await run_in_threadpool(media.gif_base64, frames, plan.fps)
            yield _event({"type": "video_generation.partial_video", "partial_video_index": k, "b64_json": gif,
                          "frames": len(frames), "mime_type": "image/gif", "created_at": created},
                         "video_generation.partial_video")  # fmt: skip
    frames = tasks.clip_so_far(plan, made)
    gif = await run_in_threadpool(media.gif_base64, frames, plan.fps)
    yield _event({"type": "video_generation.completed", "b64_json": gif, "frames": len(frames),
                  "mime_type": "image/gif", "created_at": created}, "video_generation.completed")  # fmt: skip


async def _chat_chunks(server: Server, sub: Submission, job: tasks.ChatJob, body, model: str, reply_id: str
                       ) -> AsyncIterator[str]:  # fmt: skip
    """OpenAI chat.completion.chunk events: a role delta, text deltas, the finish reason, [DONE]."""
    pipe = server.reader
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _event({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [choice]})  # fmt: skip

    sent = ""
    yield chunk({"role": "assistant", "content": ""})
    async for done, _total, _token in sub.events():
        text = tasks.answer_text(pipe, sub.ticket.tokens[:done])
        if text.startswith(sent) and len(text) > len(sent) and not text.endswith("\ufffd"):
            yield chunk({"content": text[len(sent) :]})
            sent = text
    tokens = await sub.result()
    final = tasks.answer_text(pipe, tokens)
    if final.startswith(sent) and len(final) > len(sent):
        yield chunk({"content": final[len(sent) :]})
    yield chunk({}, sub.ticket.finish_reason or "stop")
    if body.stream_options is not None and body.stream_options.include_usage:
        usage = {"prompt_tokens": job.prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": job.prompt_tokens + len(tokens)}  # fmt: skip
        yield _event({"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                      "choices": [], "usage": usage})  # fmt: skip
    yield _event("[DONE]")
