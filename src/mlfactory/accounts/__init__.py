"""Accounts of the API: users, their roles and their argon2 password hashes."""

from mlfactory.accounts.users import (
    ROLES,
    Account,
    AccountError,
    Role,
    add_user,
    authenticate,
    disable_user,
    get_user,
    has_role,
    list_users,
)

__all__ = [
    "ROLES",
    "Account",
    "AccountError",
    "Role",
    "add_user",
    "authenticate",
    "disable_user",
    "get_user",
    "has_role",
    "list_users",
]
