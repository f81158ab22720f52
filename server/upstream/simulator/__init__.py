"""An MSP Administrator simulator: the upstream API over an in-memory tree, with faults on demand.

Tests drive it through three objects: the `UpstreamTree` (companies, and knobs that change them,
`company_tree.py`), the `Faults` (what goes wrong, and when, `faults.py`) and the counters of the
`SimulatorState` (`state.py`); `app.py` serves them over HTTP.
"""

from server.upstream.simulator.app import (
    SIMULATOR_STATE,
    Simulator,
    create_simulator_app,
    serve_simulator,
)
from server.upstream.simulator.company_tree import Company, UpstreamTree
from server.upstream.simulator.faults import ENDPOINTS, INVALID_JSON, FaultRule, Faults, Target
from server.upstream.simulator.state import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SimulatorState,
    SimulatorUser,
)

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "ENDPOINTS",
    "INVALID_JSON",
    "SIMULATOR_STATE",
    "Company",
    "FaultRule",
    "Faults",
    "Simulator",
    "SimulatorState",
    "SimulatorUser",
    "Target",
    "UpstreamTree",
    "create_simulator_app",
    "serve_simulator",
]
