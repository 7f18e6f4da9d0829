"""What the checkpoint store's roles share (stream_ingest/blocks/store_*.py): the Redis
client, the key names under the namespace, the registered Lua scripts, and how long an
ended stream's keys and a hint live. It imports no role and not the store, so every
role can import it and nothing here can loop back.

The key names are the Redis schema (docs/how-it-works.md, "The Redis schema"): a change
here is a change of every installation's data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from stream_ingest.options import DAY_SECONDS, DEFAULT_RETENTION_DAYS
from stream_ingest.states import TERMINAL, Status

HINT_TTL_SECONDS = DAY_SECONDS

# KEYS: meta, another key of the stream. ARGV: the retention in milliseconds. The
# other key lives as long as the meta key (a revision recorded after the stream
# completed must not outlive it); without a meta key, for the retention.
FOLLOW_META = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 then return redis.call('PERSIST', KEYS[2]) end
if ttl == -2 then ttl = ARGV[1] end
return redis.call('PEXPIRE', KEYS[2], ttl)
"""


@dataclass
class RedisSpace:
    """One store's keys on one Redis. `connect` returns the store's client, built on
    first use (a store that is only saved or compared never connects)."""

    namespace: str
    connect: Callable[[], redis.Redis]
    retention_seconds: float = DEFAULT_RETENTION_DAYS * DAY_SECONDS
    hint_ttl_seconds: float = HINT_TTL_SECONDS
    _scripts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def client(self) -> redis.Redis:
        return self.connect()

    def script(self, name: str, source: str) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(source)
        return self._scripts[name]

    # -- keys ---------------------------------------------------------------
    def meta_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:meta"

    def parts_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:parts"

    def lease_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:lease"

    def prior_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:prior"

    def revisions_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:revisions"

    def ask_again_key(self, sid: str) -> str:
        return f"{self.namespace}:stream:{sid}:ask-again"

    def hint_key(self, path: str) -> str:
        return f"{self.namespace}:hint:{hashlib.sha1(os.fsencode(path)).hexdigest()}"

    def capabilities_key(self, where: str) -> str:
        return f"{self.namespace}:s3-capabilities:{hashlib.sha1(where.encode()).hexdigest()}"

    @property
    def active_key(self) -> str:
        return f"{self.namespace}:streams:active"

    @property
    def all_key(self) -> str:
        return f"{self.namespace}:streams:all"

    @property
    def identity_key(self) -> str:
        return f"{self.namespace}:streams:by-identity"

    @property
    def uploads_key(self) -> str:
        return f"{self.namespace}:uploads"

    @property
    def creating_key(self) -> str:
        return f"{self.namespace}:uploads:creating"

    def stream_keys(self, sid: str) -> tuple[str, str, str, str]:
        """The keys of a stream that the retention expires (the lease has a TTL)."""
        return self.meta_key(sid), self.parts_key(sid), self.prior_key(sid), self.revisions_key(sid)

    # -- expiry, queued in the caller's transaction --------------------------------
    # Here and not in a role: every role that changes a stream's status (streams,
    # identities through streams, revisions) queues it in its own transaction.
    def queue_retention(
        self,
        pipe: redis.client.Pipeline,
        sid: str,
        status: Status,
        before: Status | str | None = None,
    ) -> None:
        """Expire the stream's keys if `status` ends it; make them permanent if it was
        ended (`before`; None: unknown) and is live again."""
        if status in TERMINAL:
            for key in self.stream_keys(sid):
                pipe.pexpire(key, ms(self.retention_seconds))
        elif before is None or before in TERMINAL:
            for key in self.stream_keys(sid):
                pipe.persist(key)

    def queue_follow_meta(self, pipe: redis.client.Pipeline, sid: str, key: str) -> None:
        """Give `key` the meta key's expiry, in `pipe`."""
        script = self.script("follow_meta", FOLLOW_META)
        script(keys=[self.meta_key(sid), key], args=[ms(self.retention_seconds)], client=pipe)


def ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
