"""The API's enums, registered once with Strawberry from the domain's enums."""

from enum import Enum

import strawberry

from server.models import enums


@strawberry.enum
class MspStatus(Enum):
    SYNCHRONIZED = "SYNCHRONIZED"
    SYNCHRONIZING = "SYNCHRONIZING"
    DISCONNECTED = "DISCONNECTED"


Service = strawberry.enum(enums.Service)
CompanyType = strawberry.enum(enums.CompanyType)
CustomerStatus = strawberry.enum(enums.CustomerStatus)
ConnectionStatus = strawberry.enum(enums.ConnectionStatus)
SyncState = strawberry.enum(enums.SyncState)
ProtectionStatus = strawberry.enum(enums.ProtectionStatus)
Area = strawberry.enum(enums.Area)
Level = strawberry.enum(enums.Level)
DuplicateResolution = strawberry.enum(enums.DuplicateResolution)
