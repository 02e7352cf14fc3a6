"""An HTTPS reverse proxy that cuts every download off halfway, in front of a real server.

    python -m finetune_devcluster.faultproxy --bind ADDR --upstream HOST:PORT --ca CA.crt \
        --cert CRT --key KEY --port-file F

Requests are forwarded unchanged (the Host header and a SigV4 signature over it included) to the
upstream over TLS. A GET whose answer has a body sends the status, the headers and the full
Content-Length, then half of the body, and closes the connection: the client sees a download cut
off by the network, from a real S3 server's real answer.
"""

from __future__ import annotations

import http.client
import http.server
import ssl
from pathlib import Path

from .fileserver import serve_tls, tls_arguments

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Handler(http.server.BaseHTTPRequestHandler):
    upstream = ("", 0)
    context: ssl.SSLContext
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPSConnection(*self.upstream, context=self.context, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers, encode_chunked=False)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if self.command == "GET" and response.status in (200, 206) and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    parser = tls_arguments(__doc__ or "")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server (TLS)")
    parser.add_argument("--ca", required=True, type=Path, help="CA that signed the upstream's certificate")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    Handler.upstream = (host, int(port))
    Handler.context = ssl.create_default_context(cafile=str(args.ca))
    serve_tls(Handler, args)


if __name__ == "__main__":
    main()
