"""Files a signed-in user downloads: an installer's agent configuration.

Only the installer's token hash is stored, so the file can be made only while the token is at
hand: a front end posts the id and the token it was shown at creation, and gets the file."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.api.http import bearer
from server.domain import accounts, global_ids, installers
from server.domain.access import scope_of
from server.domain.errors import DomainError

MAX_BODY = 4096


async def installer_config(request: Request) -> Response:
    """POST {"installerId", "token"} -> the agent configuration as a file."""
    settings = request.app.state.settings
    token = bearer(request.headers.get("authorization"))
    session = await accounts.resolve_session(token or "", settings.session_ttl)
    scope = None
    if session is not None:
        scope = await scope_of(
            session.instance_id, session.user_id, session.owner, session.home_group_path
        )
    if scope is None:
        return JSONResponse({"error": "sign in first"}, status_code=401)
    raw = await request.body()
    try:
        body = orjson.loads(raw) if len(raw) <= MAX_BODY else {}
        installer_id = global_ids.decode(body["installerId"], "Installer")[1]
        installer_token = body["token"]
        if not isinstance(installer_token, str) or len(installer_token) > 256:
            raise TypeError
    except (orjson.JSONDecodeError, global_ids.InvalidGlobalId, KeyError, TypeError):
        return JSONResponse({"error": "expected {installerId, token}"}, status_code=400)
    try:
        installer = await installers.matching_token(scope, installer_id, installer_token)
    except DomainError as exc:
        return JSONResponse({"error": exc.message}, status_code=404)
    config = installers.installer_config(installer, installer_token, settings)
    return Response(
        orjson.dumps(config, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "content-disposition": 'attachment; filename="msp-agent.json"',
            "cache-control": "no-store",
        },
    )
