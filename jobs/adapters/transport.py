"""kombu's Redis transport with a cheaper bookkeeping of unacknowledged messages.

Messages and keys are those of kombu's Redis transport; the transport of redis:// URLs
(jobqueue_site/celery.py registers it under kombu's `redis` and `rediss` names).
It relies on kombu's private `Channel._pool` and `_create_client` (tests/integration/
test_transport.py fails on an upgrade that changes them). Three changes, the last two on the
worker's path for every message:

- A channel closed after its connection was torn down does not stop the worker (see
  `Channel._create_client`).

- One Redis client per channel. kombu builds a new `redis.Redis` for every acknowledgement and
  every delivery it records (`Channel._create_client`), and redis-py builds its table of ~200
  response callbacks in each one. A client over the channel's connection pool is thread-safe
  and can serve every call, so each channel keeps the one it made first.

- Delivery records and acknowledgements are pipelined. For each message kombu writes two
  small transactions to Redis: on delivery, the message into the `unacked` hash and its tag
  into `unacked_index` (what lets an unacknowledged message be restored); on the ack, both
  removed. kombu waits for each reply, so the worker's consumer, a single thread that also
  hands the next message to a free pool process, waits for two round trips to Redis per job.
  Here both are written at once on a connection of their own and their replies are read
  later, when more writes go out or when the channel must see them applied (before it
  restores or requeues a message, and when it closes). Redis applies them in the order they
  were sent, so a message's record always precedes its removal.

  What this changes: a record or an ack is on its way to Redis, not confirmed, when the call
  returns. Every command is idempotent, so when the connection breaks the unconfirmed ones are
  sent again, in order, on a new connection. If that fails too, the error reaches the consumer
  as kombu's own would, and what was not confirmed is covered the way a crash is covered: an
  unacked message comes back after the visibility timeout (its claim finds the job already
  handled), and a job whose message never got recorded is still `queued` in the database and
  is published again by the redispatch sweep (JOB_REDISPATCH_AFTER).
"""

import logging
import threading
import time
from collections import deque

from kombu.transport import redis, virtual
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.adapters import internals
from jobs.adapters.broker import key

log = logging.getLogger("jobqueue.broker")

BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


class PipelinedWrites:
    """Transactions sent on one connection without waiting; their replies are read later.
    Thread-safe (a threads pool acks from its threads). Commands must be idempotent: after a broken
    connection the unconfirmed transactions are sent again."""

    # Unconfirmed transactions at most; past this a write first waits for Redis to catch up.
    MAX_UNCONFIRMED = 1000

    def __init__(self, pool) -> None:
        self._pool = pool
        self._connection = None
        # (packed transaction, replies it owes), oldest first
        self._unconfirmed: deque[tuple[list[bytes], int]] = deque()
        self._owed = 0  # replies of the oldest transaction still to read
        self._lock = threading.Lock()

    def write(self, *commands: tuple) -> None:
        """Send `commands` as one MULTI/EXEC transaction; return without waiting for Redis."""
        with self._lock:
            connection = self._connect()
            packed = internals.redis_pack_transaction(connection, list(commands))
            self._read(wait=len(self._unconfirmed) >= self.MAX_UNCONFIRMED)
            self._unconfirmed.append((packed, len(commands) + 2))
            self._send(packed)

    def flush(self) -> None:
        """Wait until Redis has applied every transaction written so far."""
        with self._lock:
            while self._unconfirmed:
                self._read(wait=True)

    def close(self) -> None:
        """Flush, then give the connection back; if Redis cannot be reached, drop it."""
        try:
            self.flush()
        except BROKEN as exc:
            log.warning("%d broker bookkeeping writes unconfirmed at close: %s", len(self._unconfirmed), exc)
        with self._lock:
            if self._unconfirmed:
                self._unconfirmed.clear()
                self._drop()
            elif self._connection is not None:
                self._pool.release(self._connection)
                self._connection = None

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def _connect(self):
        if self._connection is None:
            self._connection = self._pool.get_connection()
            self._owed = self._unconfirmed[0][1] if self._unconfirmed else 0
        return self._connection

    def _send(self, packed: list[bytes]) -> None:
        try:
            internals.redis_send_packed(self._connection, packed)
        except BROKEN as exc:
            self._resend(exc)

    def _drop(self) -> None:
        """Close the connection (unread replies make it unfit for anyone else) and give it back."""
        if self._connection is not None:
            self._connection.disconnect()
            self._pool.release(self._connection)
            self._connection = None

    def _read(self, *, wait: bool) -> None:
        """Read the replies Redis has sent; `wait`: until at least one transaction is confirmed."""
        try:
            while self._unconfirmed and (wait or self._connection.can_read(timeout=0)):
                if self._owed == 0:
                    self._owed = self._unconfirmed[0][1]
                try:
                    self._connection.read_response()
                except ResponseError as exc:
                    # Refused (out of memory, wrong type): kombu's own write would have failed
                    # the same way. The message is then tracked less well, never lost.
                    log.warning("Redis refused a broker bookkeeping write: %s", exc)
                self._owed -= 1
                if self._owed == 0:
                    self._unconfirmed.popleft()
                    wait = False
        except BROKEN as exc:
            self._resend(exc)

    def _resend(self, exc: BaseException) -> None:
        """The connection broke: send every unconfirmed transaction again on a new one, once."""
        log.warning("broker connection for bookkeeping writes broke (%s); sending %d again", exc, self.unconfirmed)
        self._drop()
        try:
            connection = self._connect()
            for packed, _ in self._unconfirmed:
                internals.redis_send_packed(connection, packed)
        except BROKEN:
            lost = len(self._unconfirmed)
            self._unconfirmed.clear()
            self._owed = 0
            self._drop()
            log.warning("%d broker bookkeeping writes lost; visibility timeout and redispatch cover them", lost)
            raise


class QoS(redis.QoS):
    """kombu's ack emulation, its writes pipelined through the channel's `PipelinedWrites`."""

    def append(self, message, delivery_tag) -> None:
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        self.channel.writes.write(
            ("ZADD", key(self.unacked_index_key), time.time(), delivery_tag),
            ("HSET", key(self.unacked_key), delivery_tag, record),
        )
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag) -> None:
        self.channel.writes.write(
            ("ZREM", key(self.unacked_index_key), delivery_tag),
            ("HDEL", key(self.unacked_key), delivery_tag),
        )
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag, requeue: bool = False) -> None:
        if not requeue:
            self.ack(delivery_tag)
            return
        self.channel.writes.flush()  # the restore reads the record: it must be there
        super().reject(delivery_tag, requeue=True)

    def restore_unacked(self, client=None) -> None:
        self.channel.writes.flush()
        super().restore_unacked(client)

    def restore_visible(self, *args, **kwargs) -> None:
        self.channel.writes.flush()
        super().restore_visible(*args, **kwargs)


class Channel(redis.Channel):
    QoS = QoS
    _sync_client = None
    _writes = None

    def _create_client(self, asynchronous: bool = False):
        if self._pool is None and self.connection.client is None:
            # kombu already tore the broker connection down (the consumer reconnecting after Redis
            # went away) when this channel's close asks for a client to restore its unacked
            # messages. kombu's own pool would fail with an AttributeError, which stops the
            # worker ("Unrecoverable error"); a connection error is what a close ignores. The
            # messages stay recorded in Redis (restored after the visibility timeout) and their
            # jobs are still `queued` or `running` in the database (redispatch sweep, lease).
            raise RedisConnectionError("the broker connection is already closed")
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._sync_client is None or self._sync_client.connection_pool is not self.pool:
            self._sync_client = super()._create_client()
        return self._sync_client

    @property
    def writes(self) -> PipelinedWrites:
        if self._writes is None:
            self._writes = PipelinedWrites(self.pool)
        return self._writes

    def close(self) -> None:
        # Before kombu disconnects the pool: what was written reaches Redis first.
        if self._writes is not None:
            self._writes.close()
        super().close()


class Transport(redis.Transport):
    Channel = Channel
