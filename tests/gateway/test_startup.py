"""Start-up checks: /admin open beyond loopback is refused; the open-files limit fits the cap."""

import resource

import pytest

from gateway.replicas_file import ConfigError
from gateway.settings import GatewaySettings
from gateway.startup import check_admin_exposure, fit_connection_cap, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("gateway.example", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def settings(**values: object) -> GatewaySettings:
    return GatewaySettings(replicas=["http://127.0.0.1:9"], **values)  # type: ignore[arg-type]


def test_open_admin_beyond_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        check_admin_exposure(settings(host="0.0.0.0"))
    message = str(caught.value)
    assert "0.0.0.0" in message and "GATEWAY_ADMIN_KEY" in message
    assert "GATEWAY_ALLOW_OPEN_ADMIN" in message
    with pytest.raises(ConfigError):
        check_admin_exposure(settings(host="0.0.0.0", admin_key=""))  # empty is unset
    check_admin_exposure(settings(host="0.0.0.0", admin_key="k" * 32))
    check_admin_exposure(settings(host="0.0.0.0", allow_open_admin=True))
    check_admin_exposure(settings(host="127.0.0.1"))


def test_keys_never_show_in_the_settings_repr() -> None:
    shown = repr(settings(api_keys="sk-client-secret", admin_key="sk-admin-secret"))
    assert "sk-client-secret" not in shown and "sk-admin-secret" not in shown


def test_connection_cap_fits_the_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        cap, files = fit_connection_cap(100)
        assert cap == 100 and files >= 2 * 100
        # A cap the hard limit cannot carry is lowered to what it can.
        if hard != resource.RLIM_INFINITY:
            cap, files = fit_connection_cap(hard)
            assert cap < hard and files == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
