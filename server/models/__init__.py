"""Tortoise models, one module per aggregate; `MODELS_MODULES` is what Tortoise loads."""

from server.models.accounts import (
    Account,
    KnownSignInSite,
    PermissionSet,
    Session,
    SignInAccountWindow,
    SignInWindow,
    User,
)
from server.models.companies import Company, StaticGroup, SubtreeCount
from server.models.computers import Computer, Installer, SyncRun
from server.models.instances import AuditEntry, Instance
from server.models.licenses import License, UsageDay, UsageLine

MODELS_MODULES = [
    "server.models.accounts",
    "server.models.instances",
    "server.models.companies",
    "server.models.computers",
    "server.models.licenses",
]

__all__ = [
    "MODELS_MODULES",
    "Account",
    "AuditEntry",
    "Company",
    "Computer",
    "Installer",
    "Instance",
    "KnownSignInSite",
    "License",
    "PermissionSet",
    "Session",
    "SignInAccountWindow",
    "SignInWindow",
    "StaticGroup",
    "SubtreeCount",
    "SyncRun",
    "UsageDay",
    "UsageLine",
    "User",
]
