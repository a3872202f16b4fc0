"""What the Redis store checks of its server: at start-up, and on every health report.

A Redis that evicts keys under memory pressure (any maxmemory-policy but noeviction) would lose
jobs without a trace, so the store refuses it; one without persistence loses every job on a
restart, so the store warns. Health reports the same facts, with the latency of a PING.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rex

from aijobs import errors

log = logging.getLogger("aijobs.store.redis")

MIN_VERSION = (7, 0)


class RedisMisconfigured(errors.StoreUnavailable):
    """The Redis server is configured in a way that can lose jobs"""


def redact(url: str) -> str:
    """The URL without its password, for messages and health reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


async def _config_get(client: aioredis.Redis, name: str) -> str | None:
    """CONFIG GET, or None where a managed Redis disables CONFIG."""
    try:
        reply: dict[Any, Any] = await client.config_get(name)
    except rex.ResponseError:
        return None
    value = reply.get(name)
    return None if value is None else str(value)


async def _server_info(client: aioredis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = await client.info("server")
    info.update(await client.info("memory"))
    info.update(await client.info("persistence"))
    return info


async def check_server(client: aioredis.Redis, url: str) -> dict[str, Any]:
    """Refuse a Redis that can lose jobs silently; warn about one that loses them on restart.

    Returns what it learned (version, eviction policy, persistence settings).
    """
    where = redact(url)
    try:
        info = await _server_info(client)
        save = await _config_get(client, "save")
        appendfsync = await _config_get(client, "appendfsync")
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        raise errors.StoreUnavailable(f"cannot reach Redis at {where}: {exc}") from exc
    version = str(info.get("redis_version", "0"))
    if _version(version) < MIN_VERSION:
        raise RedisMisconfigured(
            f"Redis at {where} is version {version}; aijobs needs Redis 7.0 or newer"
        )
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        raise RedisMisconfigured(
            f"Redis at {where} has maxmemory-policy {policy}: under memory pressure it "
            "deletes keys, and jobs would vanish without a trace. Set "
            "'maxmemory-policy noeviction' (redis.conf, or CONFIG SET maxmemory-policy "
            "noeviction); Redis then refuses writes when full and aijobs answers 503."
        )
    aof = str(info.get("aof_enabled", "0")) == "1"
    if not aof and not save:
        log.warning(
            "Redis at %s has persistence off (appendonly no, %s): a Redis restart loses "
            "every job. Run it with 'appendonly yes'.",
            where,
            "no RDB save points" if save == "" else "RDB settings unknown: CONFIG is disabled",
        )
    elif not aof:
        log.warning(
            "Redis at %s persists by RDB snapshots only (save %s): a crash loses the jobs "
            "since the last snapshot. Run it with 'appendonly yes'.",
            where,
            save,
        )
    elif appendfsync not in (None, "always"):
        log.info(
            "Redis at %s: appendfsync %s; a power loss can lose about the last second of "
            "writes ('appendfsync always' closes that window)",
            where,
            appendfsync,
        )
    return {
        "redis_version": version,
        "maxmemory_policy": policy,
        "aof_enabled": aof,
        "appendfsync": appendfsync,
        "rdb_save": save,
    }


async def health_report(
    client: aioredis.Redis | None,
    *,
    url: str,
    prefix: str,
    all_jobs_key: str,
    checked: dict[str, Any],
) -> dict[str, Any]:
    """The store's health (JobStore.health): `checked` is what check_server found at start-up."""
    info: dict[str, Any] = {
        "healthy": False,
        "store": "redis",
        "url": redact(url),
        "prefix": prefix,
    }
    if client is None:
        info["error"] = "the Redis store is not open"
        return info
    try:
        t0 = time.perf_counter()
        await client.ping()
        latency = (time.perf_counter() - t0) * 1000
        server = await _server_info(client)
        jobs = await client.zcard(all_jobs_key)
        aof = str(server.get("aof_enabled", "0")) == "1"
        policy = str(server.get("maxmemory_policy", ""))
        info.update(
            healthy=True,
            latency_ms=round(latency, 3),
            version=server.get("redis_version"),
            jobs=jobs,
            persistence={
                "aof_enabled": aof,
                "appendfsync": checked.get("appendfsync"),
                "rdb_save": checked.get("rdb_save"),
                "aof_last_write_status": server.get("aof_last_write_status"),
                "rdb_last_bgsave_status": server.get("rdb_last_bgsave_status"),
                "loading": str(server.get("loading", "0")) == "1",
            },
            maxmemory_policy=policy,
            memory={
                "used_bytes": server.get("used_memory"),
                "used_human": server.get("used_memory_human"),
                "peak_human": server.get("used_memory_peak_human"),
                "maxmemory_bytes": server.get("maxmemory"),
                "maxmemory_human": server.get("maxmemory_human"),
            },
        )
        warnings = []
        if policy != "noeviction":
            warnings.append(f"maxmemory-policy {policy} can evict jobs")
        if not aof and not checked.get("rdb_save"):
            warnings.append("persistence is off: a restart loses every job")
        if warnings:
            info["warnings"] = warnings
            info["healthy"] = policy == "noeviction"
    except Exception as exc:  # health never raises: it reports
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info
