"""What the manager's handlers share: settings (with the effective policy), the stores, the master's view."""

from __future__ import annotations

from dataclasses import dataclass

from seedserve.manager_app.artifact_check import SpareSandbox
from seedserve.manager_app.master_view import MasterView
from seedserve.ratelimit import FailureLimiter
from seedserve.registry import ModelStore
from seedserve.registry.account_store import AccountStore
from seedserve.registry.invites import InviteStore
from seedserve.settings import Settings

__all__ = ["ManagerState"]


@dataclass(frozen=True)
class ManagerState:
    settings: Settings
    store: ModelStore
    accounts: AccountStore
    #: The admin token signs in as the ``admin`` account.
    admin_token: str
    master: MasterView
    #: Failed sign-ins, per client address and per username.
    sign_in_failures: FailureLimiter
    #: The admin's invite codes (consumed by sign-up under SEEDSERVE_SIGNUP=invite).
    invites: InviteStore
    #: Test-loads of uploaded artifacts, each in a sandbox of its own, one started ahead.
    test_loads: SpareSandbox

    @property
    def policy(self) -> dict[str, str]:
        """The effective sign-up and handler policy (explicit, or the host's default)."""
        return {"signup": self.settings.signup, "handlers": self.settings.handlers}
