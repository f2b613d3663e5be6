"""Who the token belongs to: what a client shows and offers depends on the role."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from mlfactory.api.deps import Viewer

router = APIRouter(tags=["auth"])


class Me(BaseModel):
    username: str
    role: str


@router.get("/v1/me", response_model=Me)
def me(account: Viewer) -> Me:
    """The user name and role of the token's account."""
    return Me(username=account.username, role=account.role)
