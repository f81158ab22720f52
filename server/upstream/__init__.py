"""The MSP Administrator: the client the sync reads the company tree with, the hosts it may call,
and a simulator of it."""

from server.upstream.client import (
    MspAdministratorClient,
    ProgressCallback,
    UpstreamAuthError,
    UpstreamCompany,
    UpstreamCompanyRef,
    UpstreamError,
    UpstreamLimitExceeded,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamSnapshot,
    UpstreamStats,
    UpstreamTreeError,
    UpstreamUnavailable,
    UpstreamUnreachable,
    UpstreamUser,
)

__all__ = [
    "MspAdministratorClient",
    "ProgressCallback",
    "UpstreamAuthError",
    "UpstreamCompany",
    "UpstreamCompanyRef",
    "UpstreamError",
    "UpstreamLimitExceeded",
    "UpstreamNotFound",
    "UpstreamProtocolError",
    "UpstreamSnapshot",
    "UpstreamStats",
    "UpstreamTreeError",
    "UpstreamUnavailable",
    "UpstreamUnreachable",
    "UpstreamUser",
]
