"""The MSP Administrator: the client the sync reads the company tree with, and a simulator of it."""

from server.upstream.client import (
    MspAdministratorClient,
    ProgressCallback,
    UpstreamAuthError,
    UpstreamCompany,
    UpstreamCompanyRef,
    UpstreamError,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamSnapshot,
    UpstreamStats,
    UpstreamTreeError,
    UpstreamUnavailable,
    UpstreamUser,
)

__all__ = [
    "MspAdministratorClient",
    "ProgressCallback",
    "UpstreamAuthError",
    "UpstreamCompany",
    "UpstreamCompanyRef",
    "UpstreamError",
    "UpstreamNotFound",
    "UpstreamProtocolError",
    "UpstreamSnapshot",
    "UpstreamStats",
    "UpstreamTreeError",
    "UpstreamUnavailable",
    "UpstreamUser",
]
