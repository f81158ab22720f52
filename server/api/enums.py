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
    LicenseState,
    ProtectionStatus,
    Service,
    SyncState,
)

strawberry.enum(Area)
strawberry.enum(CompanyType)
strawberry.enum(ConnectionStatus)
strawberry.enum(CustomerStatus)
strawberry.enum(DuplicateResolution)
strawberry.enum(Level)
strawberry.enum(LicenseState)
strawberry.enum(ProtectionStatus)
strawberry.enum(Service)
strawberry.enum(SyncState)


@strawberry.enum
class MspStatus(Enum):
    SYNCHRONIZED = "SYNCHRONIZED"
    SYNCHRONIZING = "SYNCHRONIZING"
    DISCONNECTED = "DISCONNECTED"
