"""The sign-up and handler policy: defaults per listening address, explicit
settings winning, and the pure decisions with the messages they give."""

from __future__ import annotations

import pytest

from seedserve.errors import Forbidden, InvalidInput
from seedserve.manager_app.policy import handler_refusal, handlers_allowed, invite_needed
from seedserve.settings import Settings, is_loopback, policy_defaults


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST.", "::1", "[::1]",
                                  "::ffff:127.0.0.1"])
def test_loopback_hosts_default_to_open_sign_up_and_all_handlers(host: str) -> None:
    assert is_loopback(host)
    assert policy_defaults(host) == ("open", "all")
    settings = Settings(host=host)
    assert (settings.signup, settings.handlers) == ("open", "all")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "2001:db8::1", "seedserve.example.com",
                                  "localhost.example.com", "128.0.0.1", ""])
def test_hosts_beyond_loopback_default_to_invites_and_trusted_handlers(host: str) -> None:
    assert not is_loopback(host)
    settings = Settings(host=host)
    assert (settings.signup, settings.handlers) == ("invite", "trusted")


def test_an_explicit_policy_wins_over_the_hosts_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(host="0.0.0.0", signup="open", handlers="all").signup == "open"
    assert Settings(host="127.0.0.1", signup="closed", handlers="none").handlers == "none"
    monkeypatch.setenv("SEEDSERVE_HOST", "0.0.0.0")
    monkeypatch.setenv("SEEDSERVE_HANDLERS", "all")
    settings = Settings()
    assert (settings.signup, settings.handlers) == ("invite", "all")


def test_an_unknown_policy_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'open', 'invite' or 'closed'"):
        Settings(signup="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'all', 'trusted' or 'none'"):
        Settings(handlers="some")  # type: ignore[arg-type]


def test_up_prints_the_effective_policy() -> None:
    from seedserve.cluster.up import policy_line

    line = policy_line(Settings(host="0.0.0.0"))
    assert line.startswith("sign-up: invite, handler packages: trusted (listening on 0.0.0.0, beyond loopback")
    assert "sign-up: open, handler packages: all (listening on loopback" in policy_line(Settings())


def test_open_sign_up_needs_no_invite_and_the_admin_never_does() -> None:
    assert invite_needed("open", None, by_admin=False) is None
    assert invite_needed("invite", None, by_admin=True) is None
    assert invite_needed("closed", None, by_admin=True) is None
    assert invite_needed("invite", " inv_abc ", by_admin=False) == "inv_abc"


@pytest.mark.parametrize("invite", [None, "", "  "])
def test_invite_sign_up_without_a_code_says_to_send_one(invite: object) -> None:
    with pytest.raises(Forbidden, match="needs an invite code") as refused:
        invite_needed("invite", invite, by_admin=False)
    assert refused.value.input == "invite"


@pytest.mark.parametrize("policy", ["open", "invite", "closed"])
@pytest.mark.parametrize("invite", [5, ["inv_x"], {}, "x" * 129])
def test_an_invite_that_is_not_a_short_string_is_bad_input_under_every_policy(policy: str, invite: object) -> None:
    with pytest.raises(InvalidInput, match="a string of at most 128 characters"):
        invite_needed(policy, invite, by_admin=False)  # type: ignore[arg-type]


def test_closed_sign_up_says_who_creates_accounts() -> None:
    with pytest.raises(Forbidden, match="sign-up is closed.*only the admin creates accounts"):
        invite_needed("closed", "inv_anything", by_admin=False)


def test_who_may_register_handler_packages() -> None:
    table = {(policy, admin, trusted): handlers_allowed(policy, admin=admin, trusted=trusted)  # type: ignore[arg-type]
             for policy in ("all", "trusted", "none") for admin in (False, True) for trusted in (False, True)}
    assert all(table[("all", a, t)] for a in (False, True) for t in (False, True))
    assert not any(table[("none", a, t)] for a in (False, True) for t in (False, True))
    assert table[("trusted", False, False)] is False
    assert table[("trusted", False, True)] and table[("trusted", True, False)]


def test_a_handler_refusal_says_what_is_accepted_instead() -> None:
    trusted = handler_refusal("trusted")
    assert "need a trusted account" in trusted.message and "seedserve users trust" in trusted.message
    assert "TorchScript or a torch.export program" in trusted.message and trusted.input == "format"
    nobody = handler_refusal("none")
    assert "accepts no handler packages" in nobody.message and "TorchScript" in nobody.message
    assert nobody.to_body()["error"]["policy"] == "none"


def test_the_admins_username_is_reserved() -> None:
    from seedserve.errors import AlreadyExists
    from seedserve.registry.account_store import check_username

    with pytest.raises(AlreadyExists, match="reserved for the admin token"):
        check_username("admin")
    assert check_username("admin2") == "admin2"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7D", 604800)])
def test_invite_expiry_durations(text: str, seconds: int) -> None:
    from seedserve.cluster.registry_cli import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "1w", "-5m", "soon", ""])
def test_a_bad_expiry_duration_says_what_to_write(text: str) -> None:
    import click

    from seedserve.cluster.registry_cli import parse_duration

    with pytest.raises(click.BadParameter, match="use e.g. 90s, 30m, 12h or 7d"):
        parse_duration(text)
