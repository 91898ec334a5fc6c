"""The SSRF guard's address rules, without the network (names are covered over the API)."""

from __future__ import annotations

import ipaddress

import pytest

from lifeline.integrations import ssrf


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert ssrf.is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not ssrf.is_forbidden_address(ipaddress.ip_address(address))


async def test_the_checked_address_is_the_one_connected_to() -> None:
    target = await ssrf.check_url("https://93.184.215.14:8443/in?x=1", allow_private=False)
    assert target.pinned_url == "https://93.184.215.14:8443/in?x=1"
    v6 = await ssrf.check_url("http://[2606:4700:4700::1111]/", allow_private=False)
    assert v6.pinned_url == "http://[2606:4700:4700::1111]:80/"
    local = await ssrf.check_url("http://localhost:9/x", allow_private=True)
    assert ipaddress.ip_address(local.address).is_loopback
    assert local.pinned_url.endswith(":9/x") and local.host == "localhost"


async def test_a_name_that_does_not_resolve_is_a_422_on_url() -> None:
    with pytest.raises(ssrf.UnsafeUrl) as refused:
        await ssrf.check_url("https://no-such-host.invalid/hook", allow_private=True)
    assert refused.value.status_code == 422
    assert refused.value.detail.startswith("url: the host 'no-such-host.invalid' does not resolve")
