"""The allowed MSP Administrator hosts: one normalized spelling, and URLs rebuilt from it."""

from __future__ import annotations

import pytest

from server.upstream.hosts import base_url, is_allowed, normalize_host

ALLOWED = ("mspapi.eset.com", "127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("spelling", "host"),
    [
        ("MSPAPI.ESET.COM", "mspapi.eset.com"),
        ("mspapi.eset.com.", "mspapi.eset.com"),
        ("mspapi。eset。com", "mspapi.eset.com"),  # ideographic full stops
        ("Bücher.example", "xn--bcher-kva.example"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:a9fe:a9fe", "169.254.169.254"),
    ],
)
def test_every_spelling_of_a_host_normalizes_to_one(spelling: str, host: str) -> None:
    assert normalize_host(spelling) == host


@pytest.mark.parametrize(
    "spelling",
    ["", "a b", "a..b", "-a.example", "x" * 64 + ".example", "08", "1.2.3.4.5", "fe80::1%eth0",
     "[::1", "host:443", "http://mspapi.eset.com", "a_b.example", "%31%32%37.0.0.1"],
)  # fmt: skip
def test_what_is_neither_a_host_name_nor_an_address_is_refused(spelling: str) -> None:
    with pytest.raises(ValueError, match="not a host name or address"):
        normalize_host(spelling)


@pytest.mark.parametrize(
    ("url", "rebuilt", "host"),
    [
        ("https://mspapi.eset.com/", "https://mspapi.eset.com", "mspapi.eset.com"),
        (" https://MSPAPI.eset.com.:443/v/ ", "https://mspapi.eset.com:443/v", "mspapi.eset.com"),
        ("http://0x7f.1:8080", "http://127.0.0.1:8080", "127.0.0.1"),
        ("http://[0:0::1]:8080/", "http://[::1]:8080", "::1"),
        ("https://mspapi。eset。com", "https://mspapi.eset.com", "mspapi.eset.com"),
    ],
)  # fmt: skip
def test_a_url_is_rebuilt_from_its_checked_parts(url: str, rebuilt: str, host: str) -> None:
    assert base_url(url) == (rebuilt, host)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://mspapi.eset.com", "must be an http(s) URL"),
        ("mspapi.eset.com", "must be an http(s) URL"),
        ("https://", "must be an http(s) URL"),
        ("https://user@mspapi.eset.com", "must not hold a user name or password"),
        ("https://mspapi.eset.com:pw@127.0.0.1", "must not hold a user name or password"),
        ("https://mspapi.eset.com?next=http://127.0.0.1", "must not have a query or fragment"),
        ("https://mspapi.eset.com#x", "must not have a query or fragment"),
        ("https://mspapi.eset.com:99999", "is not a valid URL"),
        ("https://mspapi.eset.com:port", "is not a valid URL"),
        ("https://[::1", "is not a valid URL"),
        ("https://a b.example", "host of the MSP Administrator URL is not valid"),
        ("https://x" + "y" * 300, "host of the MSP Administrator URL is not valid"),
    ],
)
def test_a_url_that_is_not_a_plain_base_url_is_refused_saying_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        base_url(url)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://MSPAPI.ESET.COM./",
        "https://mspapi.eset.com:8443",
        "http://2130706433:9000",
        "http://[::ffff:7f00:1]/",
        "http://[0000::1]:80",
    ],
)
def test_allowed_hosts_are_allowed_in_any_spelling_and_on_any_port(url: str) -> None:
    assert is_allowed(base_url(url)[1], ALLOWED)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://0xa9fea9fe/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost:5432",
        "http://127.0.0.2",
        "https://mspapi.eset.com.evil.example",
        "https://evil.example/mspapi.eset.com",
        "https://mspapi-eset.com",
        "https://mspapі.eset.com",  # a Cyrillic i  # noqa: RUF001
        "http://10.0.0.1",
    ],
)
def test_any_other_host_is_not_allowed(url: str) -> None:
    assert not is_allowed(base_url(url)[1], ALLOWED)


def test_allowed_entries_are_normalized_too() -> None:
    assert is_allowed("mspapi.eset.com", ["  MSPAPI.eset.com. "])
    assert is_allowed("::1", ["[::1]"])
    assert not is_allowed("mspapi.eset.com", [])
