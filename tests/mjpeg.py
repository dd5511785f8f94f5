"""A loopback MJPEG-over-HTTP server for tests (bounded in frames and time)."""

import http.server
import socketserver
import threading
import time


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames on 127.0.0.1 (port 0).

    ``jpegs`` are served in turn. Connection ``n`` (from 0) gets ``plan[n]`` frames (the last entry repeats)
    at ``interval`` seconds apart, then the connection is closed. The server
    stops itself after ``lifetime`` seconds whatever happens.
    """

    def __init__(self, jpegs, plan, interval=0.02, lifetime=20.0):
        self.plan = list(plan)
        self.interval = interval
        self.connections = 0
        self.jpegs = list(jpegs)
        self.stopping = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                n = owner.connections
                owner.connections += 1
                frames = owner.plan[min(n, len(owner.plan) - 1)]
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                for i in range(frames):
                    if owner.stopping.is_set():
                        break
                    jpeg = owner.jpegs[i % len(owner.jpegs)]
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(owner.interval)
                self.close_connection = True

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:{}/video.mjpg".format(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.timer = threading.Timer(lifetime, self.stop)
        self.timer.daemon = True

    def __enter__(self):
        self.thread.start()
        self.timer.start()
        return self

    def stop(self):
        if not self.stopping.is_set():
            self.stopping.set()
            self.server.shutdown()
            self.server.server_close()

    def __exit__(self, *exc):
        self.timer.cancel()
        self.stop()
