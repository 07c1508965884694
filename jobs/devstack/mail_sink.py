"""The development stack's mail server: an SMTP sink on loopback that keeps what it accepts in a
Maildir, and that refuses some recipients on purpose so email retries and dead letters can be
watched (`make run` starts it; the admin's Mail page reads it).

By the recipient's local part:
- `greylist...@` is refused the first time with `451 4.7.1` (try again later), as greylisting
  servers do, and accepted when the job retries (then forgotten, so each message shows it);
- `bounce...@` is refused with `550 5.1.1` (no such mailbox): a permanent failure;
- anything else is accepted.

It uses aiosmtpd (a development requirement), imported only when the sink starts.
"""

import logging
import mailbox
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

GREYLIST, BOUNCE = "greylist", "bounce"
# One line per message (aiosmtpd's own lines per session are left at WARNING by the settings).
log = logging.getLogger("jobqueue.mail")


class SinkHandler:
    """aiosmtpd's handler: replies to RCPT by recipient and files each accepted message."""

    def __init__(self, maildir: Path) -> None:
        self.box = mailbox.Maildir(maildir, create=True)
        self.greylisted: set[tuple[str, str]] = set()

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        local = address.partition("@")[0].lower()
        triplet = (envelope.mail_from or "", address.lower())
        if local.startswith(BOUNCE):
            reply = f"550 5.1.1 <{address}>: no such mailbox (addresses starting with {BOUNCE!r} bounce)"
        elif local.startswith(GREYLIST) and triplet not in self.greylisted:
            self.greylisted.add(triplet)
            reply = f"451 4.7.1 <{address}>: greylisted, try again later"
        else:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        log.info("refused mail from %s: %s", triplet[0], reply)
        return reply

    async def handle_DATA(self, server, session, envelope) -> str:
        key = self.box.add(envelope.original_content)
        log.info("kept mail from %s to %s (%s)", envelope.mail_from, ", ".join(envelope.rcpt_tos), key)
        for address in envelope.rcpt_tos:
            self.greylisted.discard((envelope.mail_from or "", address.lower()))
        return "250 OK: kept in the development mailbox"


def serve(*, port: int, maildir: Path) -> None:
    """Listen on 127.0.0.1:`port` until interrupted."""
    import asyncio

    from aiosmtpd.controller import Controller

    controller = Controller(SinkHandler(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


@dataclass(frozen=True)
class Mail:
    key: str
    sender: str
    to: str
    subject: str
    date: str
    body: str


def read_mail(maildir: Path, *, limit: int = 100) -> list[Mail]:
    """The newest `limit` messages in `maildir`, newest first (none if it does not exist yet)."""
    if not maildir.is_dir():
        return []
    files = sorted(
        ((path.stat().st_mtime, path) for sub in ("new", "cur") for path in (maildir / sub).glob("*")),
        reverse=True,
    )[:limit]
    return [_read(path) for _, path in files]


def _read(path: Path) -> Mail:
    """One message as far as it reads: a header or body that cannot be decoded (an unknown
    charset, a broken encoding) shows as text with replacement characters, never an error."""
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())

    def header(name: str) -> str:
        try:
            return str(message.get(name, ""))
        except (LookupError, UnicodeError, ValueError):
            return "(unreadable header)"

    return Mail(
        key=path.name.partition(":")[0],
        sender=header("From"),
        to=header("To"),
        subject=header("Subject"),
        date=header("Date"),
        body=_body(message),
    )


def _body(message: EmailMessage) -> str:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except (LookupError, UnicodeError, ValueError):
        part = None
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError, KeyError):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
