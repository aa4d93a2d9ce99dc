"""The governance report page (figures, inline SVG charts) and its CSV export, per team and period.

Handlers run in worker threads; supervisors only get their own teams.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response

from central.auth.principal import Principal
from central.console.deps import Viewer, page
from central.console.queries import teams
from central.console.state import console_of
from central.reports import figures, svg
from central.reports.export import csv_text

router = APIRouter(prefix="/console", include_in_schema=False)


FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
"""Reports look back (acknowledgement window) and forward (the end day is included) from their dates, so
they stay well inside Python's years 1-9999."""


def _period(start: str, end: str, *, today: date) -> tuple[datetime, datetime]:
    try:
        end_day = date.fromisoformat(end) if end else today
        start_day = date.fromisoformat(start) if start else max(FIRST_DAY, end_day - timedelta(days=30))
    except (ValueError, OverflowError):
        raise HTTPException(status_code=422, detail="dates must be YYYY-MM-DD") from None
    if not (FIRST_DAY <= start_day <= LAST_DAY and FIRST_DAY <= end_day <= LAST_DAY):
        raise HTTPException(status_code=422, detail=f"dates must lie between {FIRST_DAY} and {LAST_DAY}")
    if start_day > end_day:
        raise HTTPException(status_code=422, detail="the period starts after it ends")
    # The end day is included.
    return datetime.combine(start_day, time(), UTC), datetime.combine(end_day + timedelta(days=1), time(), UTC)


def _team(who: Principal, team: str) -> str | None:
    if team and not who.sees(team):
        raise HTTPException(status_code=404, detail="no such team")
    if not team and not who.all_teams:
        if not who.teams:
            raise HTTPException(status_code=404, detail="you supervise no team")
        return sorted(who.teams)[0]
    return team or None


@router.get("/reports")
def report_page(request: Request, who: Viewer, team: str = "", start: str = "", end: str = "") -> Response:
    runtime = console_of(request).runtime
    begin, finish = _period(start, end, today=runtime.clock().date())
    chosen = _team(who, team)
    report = figures.compute(runtime.db, start=begin, end=finish, team=chosen)
    charts = {
        "violations": svg.bars(report.violations_by_control),
        "ack": svg.gauge(report.acknowledgement.percent),
        "closure": svg.gauge(report.closure_within_sla.percent),
        "masking": svg.gauge(report.masking.percent),
        "ageing": svg.bars(report.review_buckets),
    }
    options = [t["name"] for t in teams(runtime.db) if who.sees(t["name"])]
    return page(
        request,
        "reports.html",
        report=report,
        charts=charts,
        teams=options,
        team=chosen or "",
        start=begin.date().isoformat(),
        end=(finish - timedelta(days=1)).date().isoformat(),
    )


@router.get("/reports.csv")
def report_csv(request: Request, who: Viewer, team: str = "", start: str = "", end: str = "") -> Response:
    runtime = console_of(request).runtime
    begin, finish = _period(start, end, today=runtime.clock().date())
    chosen = _team(who, team)
    report = figures.compute(runtime.db, start=begin, end=finish, team=chosen)
    name = f"deskwarden-report-{chosen or 'all'}-{begin.date()}-{(finish - timedelta(days=1)).date()}.csv"
    return Response(
        csv_text(figures.csv_rows(report)), media_type="text/csv", headers={"Content-Disposition": attachment(name)}
    )


def attachment(name: str) -> str:
    """A Content-Disposition for any file name: an ASCII fallback plus the UTF-8 name (RFC 6266 / RFC 8187).

    Headers are Latin-1 on the wire, so a team name such as 'Équipe 東京' cannot go into them raw.
    """
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
