"""`GET /reports/usage.csv?month=YYYY-MM`: the usage report of the viewer's scope as CSV,
streamed a page of rows at a time (a month of 10,000 companies is never held in memory)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from server.api.http import bearer
from server.domain import accounts, usage
from server.domain.access import scope_of
from server.domain.errors import InvalidInput


async def usage_csv(request: Request) -> Response:
    settings = request.app.state.settings
    token = bearer(request.headers.get("authorization"))
    session = await accounts.resolve_session(token or "", settings.session_ttl)
    if session is None:
        return JSONResponse({"error": "sign in first"}, status_code=401)
    month = request.query_params.get("month", "")
    try:
        usage.parse_month(month)
    except InvalidInput as exc:
        return JSONResponse({"error": exc.message}, status_code=400)
    scope = await scope_of(
        session.instance_id,
        session.user_id,
        session.owner,
        session.home_group_path,
        session.grants,
    )
    if scope is None:  # an account without an instance: the header row and nothing else
        return Response(",".join(usage.CSV_HEADER) + "\r\n", media_type="text/csv")
    return StreamingResponse(
        usage.csv_chunks(scope, month),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="usage-{month}.csv"',
            "cache-control": "no-store",
        },
    )
