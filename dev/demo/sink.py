"""A webhook receiver for the demo (dev/demo/run): answers 200 to every POST, verifies the
Standard Webhooks signature with the `standardwebhooks` package (not Herald's code) and prints
one line per request. Loopback only.

    python sink.py PORT SECRET
"""

import http.server
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]
    verifier = Webhook(secret)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                verifier.verify(body, dict(self.headers.items()))
                verdict = "signature verified"
            except WebhookVerificationError as e:
                verdict = f"SIGNATURE REJECTED ({e})"
            data = json.loads(body).get("data", {})
            print(
                f"sink: POST {self.path} webhook-id={self.headers.get('webhook-id')} "
                f"{verdict}: {data.get('category')} {data.get('payload')}",
                flush=True,
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
