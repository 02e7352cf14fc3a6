"""A static HTTPS file server for the tests, with the failures a download must survive.

    python -m finetune_devcluster.fileserver --bind ADDR --root DIR --cert CRT --key KEY --port-file F

Serves GET and HEAD of the files under DIR (Content-Length, ETag = MD5 of the content). A path
that starts with one of these prefixes serves the rest of the path with a fault:

    /_cut/<path>        full Content-Length, half the body, then the connection is closed
    /_nolength/<path>   the body without Content-Length (chunked), so its size is unknown in advance
    /_forbidden/<path>  403 Forbidden

A missing file is 404. The port (chosen by the kernel) is written to --port-file once listening.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import ssl
import urllib.parse
from pathlib import Path

CHUNK = 64 * 1024
FAULTS = ("cut", "nolength", "forbidden")


class Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _split(self) -> tuple[str | None, str]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        head, _, rest = path.partition("/")
        if head.startswith("_") and head[1:] in FAULTS:
            return head[1:], rest
        return None, path

    def _serve(self, body: bool) -> None:
        fault, rel = self._split()
        file = (self.root / rel).resolve()
        if fault == "forbidden":
            return self._error(403, "Forbidden")
        if not file.is_relative_to(self.root) or not file.is_file():
            return self._error(404, "Not Found")
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
        if fault == "nolength":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body:
            return
        if fault == "nolength":
            for i in range(0, len(data), CHUNK):
                part = data[i : i + CHUNK]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data)

    def _error(self, code: int, text: str) -> None:
        payload = f"{code} {text}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        print(f"{self.address_string()} {format % args}", flush=True)


def serve_tls(handler: type[http.server.BaseHTTPRequestHandler], args: argparse.Namespace) -> None:
    """Serve `handler` over TLS on args.bind (port 0: the kernel's choice, written to args.port_file)."""
    server = http.server.ThreadingHTTPServer((args.bind, 0), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = Path(args.port_file).with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.rename(args.port_file)
    server.serve_forever()


def tls_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--cert", required=True, help="serving certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--port-file", required=True, help="where the chosen port is written once listening")
    return parser


def main() -> None:
    parser = tls_arguments(__doc__ or "")
    parser.add_argument("--root", required=True, type=Path, help="directory whose files are served")
    args = parser.parse_args()
    Handler.root = args.root.resolve()
    serve_tls(Handler, args)


if __name__ == "__main__":
    main()
