"""What the manager's handlers share: settings, the stores, the master's view."""

from __future__ import annotations

from dataclasses import dataclass

from seedserve.ratelimit import FailureLimiter
from seedserve.manager_app.master_view import MasterView
from seedserve.registry import ModelStore
from seedserve.registry.accounts import AccountStore
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
