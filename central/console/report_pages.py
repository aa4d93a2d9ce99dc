"""The governance report page (figures, inline SVG charts) and its CSV export, per team and period.

Handlers run in worker threads; supervisors only get their own teams.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response

from central.auth.principal import Principal
from central.console.deps import Viewer, page
from central.console.queries import teams
from central.console.state import console_of
from central.reports import figures, svg

router = APIRouter(prefix="/console", include_in_schema=False)


def _period(start: str, end: str, *, today: date) -> tuple[datetime, datetime]:
    try:
        end_day = date.fromisoformat(end) if end else today
        start_day = date.fromisoformat(start) if start else end_day - timedelta(days=30)
    except ValueError:
        raise HTTPException(status_code=422, detail="dates must be YYYY-MM-DD") from None
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
    out = io.StringIO()
    csv.writer(out).writerows(figures.csv_rows(report))
    name = f"deskwarden-report-{chosen or 'all'}-{begin.date()}-{(finish - timedelta(days=1)).date()}.csv"
    return Response(
        out.getvalue(), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
