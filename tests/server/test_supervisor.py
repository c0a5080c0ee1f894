"""``serve --workers N``: how the command line reads N and splits the media ports (the
processes themselves are exercised in test_multinode_processes.py)."""

from __future__ import annotations

import os

import pytest

from server.cli import _parser
from server.settings import Settings, SettingsError
from server.supervisor import check_workers, media_port_slices, parse_workers


def test_workers_are_a_count_or_one_per_core() -> None:
    cores = max(1, os.cpu_count() or 1)
    assert parse_workers("3") == 3
    assert parse_workers("auto") == parse_workers("0") == cores
    assert _parser().parse_args(["serve"]).workers == 1
    assert _parser().parse_args(["serve", "--workers", "auto"]).workers == cores
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--workers", "many"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--workers", "-2"])


def test_each_worker_gets_its_own_slice_of_the_media_ports() -> None:
    assert media_port_slices(range(40000, 41000), 4) == [
        "40000-40249",
        "40250-40499",
        "40500-40749",
        "40750-40999",
    ]
    assert media_port_slices(range(40000, 40003), 2) == ["40000-40001", "40002-40002"]
    assert media_port_slices(None, 3) == [None, None, None]  # ephemeral ports each
    with pytest.raises(SettingsError, match="INSPECT_MEDIA_PORTS"):
        media_port_slices(range(40000, 40002), 3)


def test_several_workers_need_redis_and_their_own_node_ids() -> None:
    check_workers(Settings(), 1)
    with pytest.raises(SettingsError, match="INSPECT_REDIS_URL"):
        check_workers(Settings(), 2)
    redis = Settings(redis_url="redis://127.0.0.1:6379/0")
    check_workers(redis, 2)
    with pytest.raises(SettingsError, match="INSPECT_NODE_ID"):
        check_workers(Settings(redis_url=redis.redis_url, node_id="fixed"), 2)
