"""A loopback SMTP server for the I/O-bound scenario: it accepts every message `delay` seconds
after the client has sent it, and keeps nothing.

It runs in its own process and speaks only what a client sending mail needs (EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT). It stands in for a mail server on another machine, so it is kept
lean: aiosmtpd (which the tests use) took about a quarter of the scenario's CPU on 2 cores,
CPU the workers being measured would otherwise have had.

    python -m bench.smtp_sink PORT DELAY_SECONDS
"""

import asyncio
import sys

END_OF_DATA = b"\r\n.\r\n"
REPLIES = {
    b"EHLO": b"250-sink\r\n250 8BITMIME\r\n",
    b"HELO": b"250 sink\r\n",
    b"MAIL": b"250 OK\r\n",
    b"RCPT": b"250 OK\r\n",
    b"RSET": b"250 OK\r\n",
    b"NOOP": b"250 OK\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 Bye\r\n",
}


class Session(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if self.in_data:
                # The message ends with CRLF "." CRLF; the CRLF before the dot may be the one
                # that ended the DATA command's line.
                end = self.buffer.find(END_OF_DATA[2:] if self.buffer.startswith(b".\r\n") else END_OF_DATA)
                if end < 0:
                    return
                size = 3 if self.buffer.startswith(b".\r\n") else len(END_OF_DATA)
                self.buffer, self.in_data = self.buffer[end + size :], False
                asyncio.get_running_loop().call_later(self.delay, self._write, b"250 OK: queued\r\n")
                continue
            line, newline, rest = self.buffer.partition(b"\r\n")
            if not newline:
                return
            self.buffer = rest
            verb = line[:4].upper()
            self._write(REPLIES.get(verb, b"500 Command not recognized\r\n"))
            if verb == b"DATA":
                self.in_data = True
            elif verb == b"QUIT":
                self.transport.close()

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(delay), "127.0.0.1", port, backlog=1024)
    async with server:
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))
