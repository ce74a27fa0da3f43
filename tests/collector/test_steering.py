"""The reuseport steering a replacement worker uses, on real listening sockets in one process (Linux)."""

import socket
import sys

import pytest

from collector import steering

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT groups are Linux's")


def _listener(port: int = 0, address: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking listener sharing `port` (0: a free one) through SO_REUSEPORT, as a worker's does."""
    s = socket.socket(family)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((address, port))
        s.listen(128)
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


@pytest.fixture
def group():
    """Three listeners sharing one port, as three workers' would, in the order they began to listen."""
    socks = [_listener()]
    try:
        for _ in range(2):
            socks.append(_listener(socks[0].getsockname()[1]))
        yield socks
    finally:
        for s in socks:
            s.close()


def _accepted(group: list[socket.socket], count: int, address: str = "127.0.0.1") -> list[int]:
    """Open `count` connections to the group's address and port and say how many each listener got."""
    port = group[0].getsockname()[1]
    clients = [socket.create_connection((address, port), timeout=10) for _ in range(count)]
    try:
        got = []
        for listener in group:
            n = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            got.append(n)
        return got
    finally:
        for c in clients:
            c.close()


def test_the_program_sends_every_new_connection_to_the_chosen_listeners_then_hashing_resumes(group):
    steering.attach(group[0], steering.pick_program(1, 2))
    steered = _accepted(group, 60)
    assert steered[0] == 0 and sum(steered) == 60
    assert steered[1] > 0 and steered[2] > 0  # picked at random between the two
    steering.detach(group[0])
    # Hashed over all three: the first gets none with a chance of (2/3)^60, about 3 in 10^11.
    assert _accepted(group, 60)[0] > 0


def test_a_closed_listener_is_replaced_by_the_last_so_the_newest_stay_at_the_end(group):
    """What a replacement worker relies on: its sockets, the newest, are the last of the group."""
    port = group[0].getsockname()[1]
    group.pop(1).close()  # a worker dies
    newest = _listener(port)
    group.append(newest)
    assert steering.listeners_like(newest) == 3
    steering.attach(newest, steering.pick_program(steering.listeners_like(newest) - 1, 1))
    assert _accepted(group, 30) == [0, 0, 30]


def test_an_index_past_the_group_falls_back_to_hashing(group):
    """If the group shrinks while a replacement steers, its program points past the end: nothing is refused."""
    steering.attach(group[0], steering.pick_program(7, 1))
    got = _accepted(group, 60)
    assert sum(got) == 60 and all(n > 0 for n in got)


def test_the_group_is_counted_by_address_and_port():
    a = _listener()
    port = a.getsockname()[1]
    other = _listener(port, "127.0.0.2")  # same port, another address: another group
    try:
        assert steering.listeners_like(a) == 1
        with steering.own_listeners(port) as mine:
            assert sorted(s.getsockname() for s in mine) == [("127.0.0.1", port), ("127.0.0.2", port)]
    finally:
        a.close()
        other.close()


def test_a_range_outside_the_group_is_refused():
    with pytest.raises(ValueError):
        steering.pick_program(0, 0)
    with pytest.raises(ValueError):
        steering.pick_program(-1, 2)


def test_the_group_is_counted_per_family():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    listeners = []
    try:
        for family, address in ((socket.AF_INET6, "::1"), (socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
            try:
                listeners.append(_listener(listeners[0].getsockname()[1] if listeners else 0, address, family))
            except OSError as exc:
                pytest.skip(f"cannot listen on {address} here: {exc.strerror}")
        assert steering.listeners_like(listeners[0]) == 2
        assert steering.listeners_like(listeners[2]) == 1
    finally:
        for s in listeners:
            s.close()


def test_a_replacement_listening_on_two_addresses_steers_each_group_to_its_own_listener():
    """A worker listening on a name with two addresses is in two groups on one port. Each group's connections
    must go to the replacement's listener in that group, never to a survivor's counted in the other."""
    first = _listener()
    port = first.getsockname()[1]
    survivors = [first, _listener(port), _listener(port, "127.0.0.2")]
    mine = [_listener(port), _listener(port, "127.0.0.2")]
    try:
        assert steering.steer(mine)
        for address, replacement in (("127.0.0.1", mine[0]), ("127.0.0.2", mine[1])):
            group = [s for s in survivors + mine if s.getsockname()[0] == address]
            got = _accepted(group, 20, address)
            assert got[group.index(replacement)] == 20 and sum(got) == 20
        steering.unsteer(mine)
        # Hashed again: the two survivors of that group get none of 40 with a chance of (1/3)^40.
        group = [s for s in survivors + mine if s.getsockname()[0] == "127.0.0.1"]
        assert sum(_accepted(group, 40)[:2]) > 0
    finally:
        for s in survivors + mine:
            s.close()
