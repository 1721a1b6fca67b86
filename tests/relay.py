"""A TCP relay in a thread, for tests that put something between ocifs and its S3 server.

Subclasses change one step: :meth:`Relay.accepted` (e.g. wrap the client side in TLS) or
:meth:`Relay.forward` (e.g. hold the bytes while the test freezes the network).
"""

from __future__ import annotations

import socket
import threading


class Relay:
    """Relays every connection made to ``port`` on 127.0.0.1 to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def accepted(self, client: socket.socket) -> socket.socket | None:
        """The client side to relay (None: drop the connection)."""
        return client

    def forward(self, data: bytes, sink: socket.socket) -> None:
        sink.sendall(data)

    def close(self) -> None:
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        client = self.accepted(raw)
        if client is None:
            return
        upstream = socket.create_connection(self.target)
        self.sockets += [client, upstream]
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.forward(data, sink)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
