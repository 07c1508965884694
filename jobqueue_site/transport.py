"""kombu's Redis transport, with one Redis client per channel instead of one per call.

kombu builds a new `redis.Redis` for every acknowledgement and every delivery it records
(`Channel._create_client`), and redis-py builds its table of ~200 response callbacks in each
one: a noticeable share of a worker's CPU per message. A client over the channel's connection
pool is thread-safe and can serve every call, so each channel keeps the one it made first.
Selected by CELERY_BROKER_TRANSPORT; messages and keys are those of the Redis transport.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._sync_client is None or self._sync_client.connection_pool is not self.pool:
            self._sync_client = super()._create_client()
        return self._sync_client


class Transport(redis.Transport):
    Channel = Channel
