"""Who may sign up and who may register handler packages: pure decisions over
``SEEDSERVE_SIGNUP`` / ``SEEDSERVE_HANDLERS`` (see :mod:`seedserve.settings`
for their defaults), and the errors that say what to do instead.

- ``signup``: ``open`` anyone; ``invite`` with a valid invite code; ``closed``
  nobody. The admin (the admin token) creates accounts under every policy.
- ``handlers``: ``all`` anyone; ``trusted`` accounts the admin marked trusted,
  and the admin; ``none`` nobody, the admin included (a handler is Python the
  manager and the replicas run; ``none`` means the cluster runs none).
  TorchScript and ``torch.export`` artifacts are data, accepted from anyone.
"""

from __future__ import annotations

from typing import Any

from seedserve.errors import Forbidden, InvalidInput
from seedserve.settings import HandlerPolicy, SignupPolicy

__all__ = ["handler_refusal", "handlers_allowed", "invite_needed", "signup_closed"]

MAX_INVITE = 128


def signup_closed() -> Forbidden:
    return Forbidden("sign-up is closed on this manager (SEEDSERVE_SIGNUP=closed): only the admin creates "
                     "accounts (POST /api/users with the admin token); ask the admin for one", policy="closed")


def invite_needed(policy: SignupPolicy, invite: Any, *, by_admin: bool) -> str | None:
    """The invite code a sign-up must consume, or None when it needs none;
    :class:`Forbidden` when sign-up is closed or the code is missing."""
    if invite is not None and (not isinstance(invite, str) or len(invite) > MAX_INVITE):
        raise InvalidInput(f"'invite' is the invite code, a string of at most {MAX_INVITE} characters",
                           input="invite")
    if by_admin or policy == "open":
        return None
    if policy == "closed":
        raise signup_closed()
    if invite is None or not invite.strip():
        raise Forbidden("sign-up on this manager needs an invite code (SEEDSERVE_SIGNUP=invite): send the code "
                        "the admin gave you as 'invite'", input="invite", policy="invite")
    return invite.strip()


def handlers_allowed(policy: HandlerPolicy, *, admin: bool, trusted: bool) -> bool:
    """Whether a caller may register (or profile) a handler package."""
    if policy == "all":
        return True
    if policy == "none":
        return False
    return admin or trusted


def handler_refusal(policy: HandlerPolicy) -> Forbidden:
    """Why a handler package was refused, and what is accepted instead."""
    instead = "register the model as TorchScript or a torch.export program (.pt2): those are accepted from anyone"
    if policy == "none":
        message = f"this manager accepts no handler packages (SEEDSERVE_HANDLERS=none); {instead}"
    else:
        message = ("handler packages (format 'handler': Python code seedserve runs) need a trusted account "
                   f"(SEEDSERVE_HANDLERS=trusted); ask the admin to run `seedserve users trust <your username>`, "
                   f"or {instead}")
    return Forbidden(message, input="format", policy=policy)
