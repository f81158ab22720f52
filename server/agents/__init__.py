"""The agent HTTP API (`/agent/v1`): enrolment and check-ins of the agents on customer computers.

Wiring: build one `AgentRuntime(settings, bus)`, mount `agent_routes(runtime)` in the app, and
`await runtime.start()` / `await runtime.stop()` in its lifespan (after the database opens, before
it closes).
"""

from server.agents.buffer import CheckinBuffer
from server.agents.rate_limit import TokenBuckets
from server.agents.routes import MAX_BODY_BYTES, agent_routes, create_agent_app
from server.agents.runtime import AgentRuntime
from server.agents.tokens import AgentTokenCache

__all__ = [
    "MAX_BODY_BYTES",
    "AgentRuntime",
    "AgentTokenCache",
    "CheckinBuffer",
    "TokenBuckets",
    "agent_routes",
    "create_agent_app",
]
