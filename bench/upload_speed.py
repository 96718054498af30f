"""Upload throughput over loopback: dropd's `upload_zip` against `curl -F`, the same ZIP.

Both send to a sink that reads the body and answers 200 (`serve`, its own process), so the
figure is the sender's: dropd's streamed multipart POST (requests-toolbelt's encoder,
urllib3 sending 1 MiB blocks) against curl's. Each is timed from the request to the answer,
over a new connection; dropd's in a process of its own (`send`), which prints the seconds.

    python bench/upload_speed.py ZIP [--repeats 5]     # both, printed
    python bench/upload_speed.py serve                  # the sink: prints its port
    python bench/upload_speed.py send URL ZIP REPEATS   # dropd's sends: one time a line
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

READ = 1 << 20


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0 and (data := self.rfile.read(min(left, READ))):
            left -= len(data)
        answer = b'{"message": "received"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def send(url: str, path: Path, repeats: int) -> None:
    """dropd's own upload, `repeats` times, each on a new session; prints each time."""
    from daemon.provider.upload import new_session, upload_zip

    for _ in range(repeats):
        session = new_session()
        started = time.perf_counter()
        outcome = upload_zip(session, url, path, "bench.zip", "token", False, (10.0, 600.0))
        seconds = time.perf_counter() - started
        session.close()
        if outcome.status != 200:
            raise SystemExit(f"the sink answered {outcome.status}: {outcome.reason}")
        print(f"{seconds:.6f}", flush=True)


@dataclass(frozen=True)
class UploadSpeed:
    """Median seconds of each sender over `repeats` sends of a `zip_bytes` ZIP."""

    zip_bytes: int
    repeats: int
    dropd: float
    curl: float | None
    note: str = ""


def _curl_once(url: str, path: Path) -> float:
    done = subprocess.run(
        [
            *("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"),
            *("-F", f"deptFileUpload=@{path};type=application/zip", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    status, seconds = done.stdout.split()
    if status != "200":
        raise RuntimeError(f"curl -F: the sink answered {status}")
    return float(seconds)


def measure(path: Path, repeats: int = 5) -> UploadSpeed:
    """Send the ZIP at `path` with each sender `repeats` times, alternating, to one sink."""
    sink = subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{int(sink.stdout.readline())}/rest/upload/bench/zip"
        curl: list[float] = []
        dropd: list[float] = []
        for _ in range(repeats):
            if shutil.which("curl"):
                curl.append(_curl_once(url, path))
            sent = subprocess.run(
                [sys.executable, __file__, "send", url, str(path), "1"],
                capture_output=True,
                text=True,
                check=True,
            )
            dropd.append(float(sent.stdout.split()[-1]))
    finally:
        sink.terminate()
        sink.wait()
    note = "" if curl else "curl not installed"
    middle = statistics.median(curl) if curl else None
    return UploadSpeed(path.stat().st_size, repeats, statistics.median(dropd), middle, note)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve()
    elif argv[:1] == ["send"]:
        send(argv[1], Path(argv[2]), int(argv[3]))
    else:
        repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 5
        result = measure(Path(argv[0]), repeats)
        print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `daemon`, from a checkout
    sys.exit(main(sys.argv[1:]))
