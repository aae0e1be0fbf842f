"""The audit trail (P6, admins), notes on runs, firings and incidents, acknowledging an
incident (P7, operators)."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from gim_tasks.errors import GimError, aware_instant
from gim_tasks.monitor import audit, notes
from gim_tasks.runtime.holds import checked_instant
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Admin, Operator, PageAdmin, PageOperator
from gim_tasks.web.kit import AUTH, KitDep, iso_row, safe_next
from gim_tasks.web.schemas import errors, ok

router = APIRouter()

PAGE = 50
_INSTANT = "an ISO instant with its offset, e.g. 2026-12-01T00:00:00+00:00"


def _page(kit: Any, where: audit.Filter, limit: int) -> dict[str, Any]:
    with kit.engine.connect() as conn:
        rows = audit.listing(conn, where, limit + 1)  # one more: is there a next page?
    shown = [iso_row(r) for r in rows]
    more = len(shown) > limit
    return {"events": shown[:limit], "next_before": shown[limit - 1]["id"] if more else None}


def _filter(
    actor: str, action: str, target: str, since: str, until: str, before: int | None
) -> audit.Filter:
    if action and action not in audit.ACTIONS:
        raise GimError(f"unknown action '{action}'; actions are {', '.join(audit.ACTIONS)}")
    return audit.Filter(
        actor=actor.strip() or None,
        action=action or None,
        target=target.strip() or None,
        since=checked_instant(aware_instant(since, "from"), "from") if since.strip() else None,
        until=checked_instant(aware_instant(until, "to"), "to") if until.strip() else None,
        before_id=before,
    )


Text = Annotated[str, Query(max_length=200)]


@router.get(
    "/api/audit",
    tags=["audit"],
    response_model=None,
    responses={
        **ok(sc.AuditPage, "Audited actions, newest first."),
        **AUTH,
        **errors(400, 422, unchecked="an instant before 1970 or after 2999."),
    },
)
def api_audit(
    kit: KitDep,
    who: Admin,
    actor: Text = "",
    action: Annotated[audit.Action | None, Query(description="One audited action.")] = None,
    target: Text = "",
    from_: Annotated[str, Query(alias="from", max_length=40, description=_INSTANT)] = "",
    to: Annotated[str, Query(max_length=40, description=_INSTANT)] = "",
    before: Annotated[int | None, Query(ge=1, description="Rows older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The audit trail (P6): every mutating action of every channel (admin)."""
    return _page(
        kit, _filter(actor, action.value if action else "", target, from_, to, before), limit
    )


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(kit: KitDep, request: Request, who: PageAdmin) -> Response:
    params = request.query_params
    chosen = {name: params.get(name, "") for name in ("actor", "action", "target", "from", "to")}
    before_text = params.get("before", "")
    notice = None
    try:
        before = int(before_text) if before_text else None
        where = _filter(
            chosen["actor"],
            chosen["action"],
            chosen["target"],
            chosen["from"],
            chosen["to"],
            before,
        )
        found = _page(kit, where, PAGE)
    except (GimError, ValueError) as error:
        found, notice = {"events": [], "next_before": None}, str(error)
    kept = [(k, v) for k, v in chosen.items() if v]
    following = found["next_before"]
    return kit.page(
        request,
        "audit.html",
        who,
        events=found["events"],
        chosen=chosen,
        actions=audit.ACTIONS,
        older="/audit?" + urlencode([*kept, ("before", following)]) if following else None,
        newest="/audit?" + urlencode(kept) if before_text else None,
        **({"notice": notice} if notice else {}),
    )


# ----- notes and acknowledgement (P7) ------------------------------------------------------

_NOTE_REFUSED = "a note of blanks only"


def _noted(
    kind: notes.NoteOn, target: str | int, body: sc.NoteRequest, who: Any, kit: Any
) -> dict[str, Any]:
    note_id = notes.add_note(kit.engine, kind, target, body.text, who.name)
    return {"note_id": note_id, "result": f"note added to {kind} {target}"}


_NOTE_RESPONSES = {
    **ok(sc.Noted, "Noted."),
    **AUTH,
    **errors(400, 404, 413, 422, unchecked=_NOTE_REFUSED),
}


@router.post(
    "/api/runs/{run_id}/notes", tags=["runs"], response_model=None, responses=_NOTE_RESPONSES
)
def api_note_run(
    kit: KitDep, who: Operator, run_id: Annotated[int, Path(ge=1)], body: sc.NoteRequest
) -> dict[str, Any]:
    """Add a note to a run (P7)."""
    return _noted(notes.NoteOn.RUN, run_id, body, who, kit)


@router.post(
    "/api/firings/{firing_id}/notes",
    tags=["firings"],
    response_model=None,
    responses=_NOTE_RESPONSES,
)
def api_note_firing(
    kit: KitDep,
    who: Operator,
    firing_id: Annotated[str, Path(max_length=200)],
    body: sc.NoteRequest,
) -> dict[str, Any]:
    """Add a note to a firing of the ledger (P7)."""
    return _noted(notes.NoteOn.FIRING, firing_id, body, who, kit)


@router.post(
    "/api/incidents/{incident_id}/notes",
    tags=["alerts"],
    response_model=None,
    responses=_NOTE_RESPONSES,
)
def api_note_incident(
    kit: KitDep, who: Operator, incident_id: Annotated[int, Path(ge=1)], body: sc.NoteRequest
) -> dict[str, Any]:
    """Add a note to an incident (P7); its mails that follow carry it."""
    return _noted(notes.NoteOn.INCIDENT, incident_id, body, who, kit)


@router.post(
    "/api/incidents/{incident_id}/ack",
    tags=["alerts"],
    response_model=None,
    responses={
        **ok(sc.Result, "Acknowledged."),
        **AUTH,
        **errors(400, 404, 409, 413, 422, unchecked=_NOTE_REFUSED),
    },
)
def api_ack(
    kit: KitDep, who: Operator, incident_id: Annotated[int, Path(ge=1)], body: sc.AckRequest
) -> dict[str, str]:
    """Acknowledge an open incident (P7): who and when are recorded, its repeat notices stop
    (its occurrence count still rises); it still resolves by itself."""
    return {"result": notes.acknowledge(kit.engine, incident_id, who.name, body.note)}


@router.post("/notes", include_in_schema=False)
def note_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    kind: Annotated[str, Form(max_length=20)],
    target: Annotated[str, Form(max_length=200)],
    text: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form(max_length=500)] = "/alerts",
) -> Response:
    try:
        notes.add_note(kit.engine, kind, target, text, who.name)
        notice = f"note added to {kind} {target}"
    except GimError as error:
        notice = f"note not added: {error}"
    return kit.back(request, safe_next(back), notice)


@router.post("/alerts/{incident_id}/ack", include_in_schema=False)
def ack_page(
    kit: KitDep,
    request: Request,
    who: PageOperator,
    incident_id: Annotated[int, Path(ge=1)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        notice = notes.acknowledge(kit.engine, incident_id, who.name, note or None)
    except GimError as error:
        notice = f"not acknowledged: {error}"
    return kit.back(request, "/alerts", notice)
