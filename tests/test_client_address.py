"""The client address: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest

from server.client_address import resolve, trusted_networks
from server.settings import Settings, SettingsError

PROXIES = trusted_networks(("10.0.0.0/8", "192.0.2.1"))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards() -> None:
    assert resolve("203.0.113.9", "198.51.100.7", ()) == "203.0.113.9"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert resolve("203.0.113.9", "198.51.100.7", PROXIES) == "203.0.113.9"


def test_behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    # the client forged the first hop; the proxies appended what they saw
    forwarded = "1.2.3.4, 198.51.100.7, 10.1.2.3"
    assert resolve("192.0.2.1", forwarded, PROXIES) == "198.51.100.7"


def test_a_trusted_peer_without_a_header_is_the_client() -> None:
    assert resolve("10.9.9.9", None, PROXIES) == "10.9.9.9"


def test_an_unreadable_hop_stops_the_walk_at_the_last_readable_one() -> None:
    assert resolve("10.0.0.1", "garbage, 10.0.0.2", PROXIES) == "10.0.0.2"


def test_a_malformed_proxy_setting_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({"MSP_CONSOLE_TRUSTED_PROXIES": "10.0.0.0/8, not-an-address"})
