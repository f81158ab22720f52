"""The API's enums: the domain's own, registered with Strawberry once (the same classes, so a
model's value is the API's value), and MspStatus."""

from enum import Enum

import strawberry

from server.models.enums import (
    Area,
    CompanyType,
    ConnectionStatus,
    CustomerStatus,
    DuplicateResolution,
    Level,
    ProtectionStatus,
    Service,
    SyncState,
)

__all__ = [
    "Area",
    "CompanyType",
    "ConnectionStatus",
    "CustomerStatus",
    "DuplicateResolution",
    "Level",
    "MspStatus",
    "ProtectionStatus",
    "Service",
    "SyncState",
]

for _domain_enum in (
    Area,
    CompanyType,
    ConnectionStatus,
    CustomerStatus,
    DuplicateResolution,
    Level,
    ProtectionStatus,
    Service,
    SyncState,
):
    strawberry.enum(_domain_enum)


@strawberry.enum
class MspStatus(Enum):
    SYNCHRONIZED = "SYNCHRONIZED"
    SYNCHRONIZING = "SYNCHRONIZING"
    DISCONNECTED = "DISCONNECTED"
