"""The Redis transport the Celery app uses: kombu's, with one fault mended.

When Redis dies (SIGKILL, not a clean shutdown) while a worker holds unacknowledged messages,
the consumer tears its connection down, and then kombu uses the dead connection's channel: its
QoS puts the unacknowledged messages back (`restore_unacked`), and a task finishing on a pool
thread acknowledges its message (`ack`). Both ask the channel for connection parameters, the
transport is gone, and the AttributeError ends the worker ("Unrecoverable error"). Here a
channel whose connection is gone raises a connection error instead, which kombu and Celery
treat as what it is (the broker is away: reconnect), and its QoS forgets what it held. Nothing
is lost: Redis restarted empty, or the messages come back after the visibility timeout, and the
job rows say what is due (the sweeper sends it again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from kombu.transport import redis as kombu_redis


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        if client is None and getattr(self.channel.connection, "client", None) is None:
            self._delivered.clear()
            return
        return super().restore_unacked(client)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous=False):
        if self.connection is None or getattr(self.connection, "client", None) is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


@contextlib.contextmanager
def brief_client(url: str, timeout_s: float = 2.0) -> Iterator[redis.Redis]:
    """A broker connection for one answer (a scrape, a health check, a figure), with short
    timeouts: a broker that is down costs the answer seconds, not its caller's whole timeout."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        yield client
    finally:
        client.close()
