"""``tests.waiting.free_port``: ports for child processes that no other connection can take first.

CI once lost a shard replica to "address already in use": the port had come from ``bind(0)``, i.e.
from the kernel's ephemeral range, and before the replica bound it an outgoing connection on the
machine had been given the same port as its local end.
"""

from __future__ import annotations

import socket

from tests.waiting import _ephemeral_low, _worker_slice, free_port


def test_ports_come_from_below_the_ephemeral_range_and_from_this_workers_slice():
    ports = [free_port() for _ in range(50)]
    assert all(port < _ephemeral_low() for port in ports), ports
    assert all(port in _worker_slice() for port in ports), ports


def test_no_port_is_handed_out_twice():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_port_in_use_is_skipped():
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = free_port()
        # The next one in turn is taken by someone else: free_port passes over it.
        following = port + 1 if port + 1 in _worker_slice() else _worker_slice().start
        held.bind(("127.0.0.1", following))
        held.listen()
        assert free_port() != following


def test_worker_slices_do_not_overlap(monkeypatch):
    slices = []
    for index in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        slices.append(set(_worker_slice()))
    assert not (slices[0] & slices[1]) and not (slices[1] & slices[2]) and not (slices[0] & slices[2])
    assert all(len(s) > 1000 for s in slices)
