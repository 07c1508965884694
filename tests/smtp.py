"""A real SMTP server for the tests, whose replies a test can script."""

from collections import Counter

from aiosmtpd.controller import Controller

from tests import servers


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free loopback port that counts connections (one EHLO
    each), keeps each message's recipients and counts deliveries by subject.

    `replies[command]` lists the replies to give to the next MAIL, RCPT or DATA commands, in
    order, instead of accepting them; once it is empty they are accepted.
    """

    def __init__(self) -> None:
        self.connections, self.messages = 0, []
        self.deliveries: Counter = Counter()  # subject -> messages accepted
        self.replies: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self.port = servers.free_port()
        self.controller = None

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        """Stop listening and close every client connection (if it is listening)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def restart(self) -> None:
        """Stop and listen again on the same port."""
        self.stop()
        self.start()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.replies["MAIL"]:
            return self.replies["MAIL"].pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.replies["RCPT"]:
            return self.replies["RCPT"].pop(0)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.replies["DATA"]:
            return self.replies["DATA"].pop(0)
        self.messages.append(envelope.rcpt_tos)
        for line in envelope.content.decode(errors="replace").splitlines():
            if line.startswith("Subject: "):
                self.deliveries[line.removeprefix("Subject: ").strip()] += 1
                break
        return "250 OK"
