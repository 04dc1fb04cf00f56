"""Feast on the cluster's Redis: the online store every gateway process reads and the stats leader pushes to.

``feature_repo/feature_store.redis.yaml`` names the Redis as ``${REDIS_URL}`` in Feast's
connection-string syntax (``host:port[,db=N,password=…]``). :func:`open_feature_store_on_redis`
fills it in from the ``redis://`` URL the gateway is configured with, so serving neither reads
nor sets an environment variable for it; ``feast -f feature_store.redis.yaml …`` on the command
line still takes ``REDIS_URL`` from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REDIS_YAML = Path("feature_store.redis.yaml")


def feast_connection_string(redis_url: str) -> str:
    """``redis[s]://[user:password@]host[:port][/db]`` in Feast's syntax: ``host:port[,db=N][,username=…][,password=…][,ssl=true]``."""
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// URL: {redis_url!r}")
    fields = [f"{parts.hostname or 'localhost'}:{parts.port or 6379}"]
    db = parts.path.strip("/")
    if db:
        fields.append(f"db={int(db)}")
    for name, value in (("username", parts.username), ("password", parts.password)):
        if value:
            value = unquote(value)
            if "," in value or "=" in value:
                raise ValueError(f"Feast's Redis connection string cannot carry a {name} with ',' or '='")
            fields.append(f"{name}={value}")
    if parts.scheme == "rediss":
        fields.append("ssl=true")
    return ",".join(fields)


def open_feature_store_on_redis(repo_path: Path, redis_url: str, yaml: Path = REDIS_YAML) -> Any:
    """A ``feast.FeatureStore`` for an applied repo, its online store the Redis at ``redis_url``.

    ``yaml`` (relative to the repo) must configure ``online_store.type: redis``; its
    ``${REDIS_URL}`` is replaced by :func:`feast_connection_string`. The registry is the repo's
    (``feast apply`` with either yaml writes the same one).
    """
    import yaml as pyyaml
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    repo_path = Path(repo_path).resolve()
    text = (repo_path / yaml).read_text(encoding="utf-8")
    raw = pyyaml.safe_load(
        os.path.expandvars(text.replace("${REDIS_URL}", feast_connection_string(redis_url)))
    )
    if (raw.get("online_store") or {}).get("type") != "redis":
        raise ValueError(f"{repo_path / yaml} does not configure a Redis online store")
    config = RepoConfig(**raw)
    config.repo_path = repo_path
    return FeatureStore(repo_path=str(repo_path), config=config)
