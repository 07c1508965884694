"""A loopback TCP proxy in front of PostgreSQL or Redis, that a fault test can cut, stall or take down.

Each connection is two pump threads (one per direction). What it can do to the traffic:

- `cut()`: reset every open connection (RST), as a failover, a NAT or a load balancer that
  drops idle flows does; new connections are accepted as before.
- `down()` / `up()`: stop listening (new connections are refused) and cut the open ones; listen
  again on the same port.
- `stall()` / `resume()`: stop forwarding bytes on every connection, open or new, while
  keeping them open: a peer that went silent, as seen by the client.
- `orphan()`: the open connections stop forwarding for good while new ones work, as after a
  failover whose old server vanished without closing anything (half-open connections).
"""

import contextlib
import socket
import struct
import threading

from tests.servers import free_port

CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close as a connection cut off in the network is closed: with an RST (linger 0).

    The shutdown first wakes the pump thread blocked in recv() on it: closing a socket another
    thread is reading from would not tear it down until that read returns.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_port: int, *, name: str = "proxy") -> None:
        self.name = name
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._orphaned: set[socket.socket] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener: socket.socket | None = None
        self.accepted = 0

    # --- control -------------------------------------------------------------------------

    def start(self) -> "TcpProxy":
        self.up()
        return self

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"{self.name}-accept", daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.cut()

    def cut(self) -> int:
        """Reset every open connection; how many there were."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            _reset(sock)
        return len(connections) // 2

    def orphan(self) -> int:
        """Stop forwarding on every open connection, keeping them open; new ones flow. How many."""
        with self._lock:
            self._orphaned.update(self._connections)
            return len(self._connections) // 2

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self.resume()
        self.down()

    # --- traffic -------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)  # the server is down: the client sees its connection reset
                continue
            for sock in (client, upstream):
                # As PostgreSQL, libpq and Redis set on theirs: each write goes out as it comes. With
                # Nagle's algorithm here, a client's pipelined writes would wait for the ACK of the
                # first one (up to 40 ms), a delay no real network path adds.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name=f"{self.name}-pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = source.recv(CHUNK)
                if not data:
                    break
                self._flowing.wait()  # stalled while this chunk was on its way: hold it
                if source in self._orphaned:
                    continue  # swallowed: the peer is gone, as far as the client can tell
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                mine = source in self._connections
                self._connections.discard(source)
                self._connections.discard(sink)
                self._orphaned.discard(source)
                self._orphaned.discard(sink)
            if mine:
                # The other side closed: pass the close on, as a direct connection would.
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
