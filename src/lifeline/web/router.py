"""Pages: the team queue, a session, my sessions; and the form posts behind their buttons.

Page handlers call the services directly and render; buttons post forms (CSRF-checked) that
redirect back. The browser script upgrades some of them (Pick Up, live updates) without
changing what the server decides.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from lifeline import metrics
from lifeline.accounts.models import Role, User, is_senior
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, MessageRole, SessionSource, SessionStatus
from lifeline.ai_sessions.schemas import MAX_MESSAGE_LENGTH, MessageCreate
from lifeline.deps import ContextDep, Principal, SessionDep
from lifeline.errors import Conflict, Forbidden, NotFound
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.schemas import MAX_ANSWER_LENGTH, MAX_BRIEF_TEXT, MAX_NOTE_LENGTH
from lifeline.web import agent_views, views
from lifeline.web.auth import FormPrincipal, WebPrincipal
from lifeline.web.routing import Bounce, PageRoute, local_path
from lifeline.web.templating import redirect, render
from lifeline.web.timeline import escalation_timeline

router = APIRouter(route_class=PageRoute, include_in_schema=False)

QUEUE_PAGE = 100
MY_SESSIONS_PAGE = 20
ACTIVE = (HandoffStatus.OPEN, HandoffStatus.CLAIMED)


def page_context(principal: Principal, **values: Any) -> dict[str, Any]:
    return {"me": principal.user, "csrf_token": principal.csrf_token, **values}


def require_senior(user: User) -> None:
    if not is_senior(user):
        raise Forbidden("Engineer or admin access required")


# ---- the team queue ---------------------------------------------------------------------


@router.get("/")
async def queue_page(
    request: Request, db: SessionDep, principal: WebPrincipal, cursor: str | None = None
) -> Response:
    user = principal.user
    live_from = await views.latest_event_id(db=db, account_id=user.account_id)
    open_rows, next_cursor = await handoffs.team_queue(
        db=db, user=user, status=HandoffStatus.OPEN, cursor=cursor, limit=QUEUE_PAGE
    )
    claimed_rows, _ = await handoffs.team_queue(
        db=db, user=user, status=HandoffStatus.CLAIMED, cursor=None, limit=QUEUE_PAGE
    )
    names = await views.member_names(db=db, account_id=user.account_id)
    senior = is_senior(user)
    items = [
        {
            "handoff": h,
            "session": s,
            "escalator": u,
            "mine": h.created_by == user.id,
            "can_pick_up": senior and h.created_by != user.id,
        }
        for h, s, u in open_rows
    ]
    claimed = [
        {
            "handoff": h,
            "session": s,
            "escalator": u,
            "claimer": "you" if h.claimed_by == user.id else names.get(h.claimed_by or "", ""),
        }
        for h, s, u in claimed_rows
    ]
    return render(
        request,
        "queue.html",
        page_context(
            principal,
            items=items,
            claimed=claimed,
            next_cursor=next_cursor,
            live_from=live_from,
        ),
    )


# ---- my sessions ------------------------------------------------------------------------


@router.get("/sessions")
async def my_sessions_page(
    request: Request,
    db: SessionDep,
    principal: WebPrincipal,
    cursor: str | None = None,
    status: SessionStatus | None = None,
) -> Response:
    rows, next_cursor = await sessions.list_sessions(
        db=db, user=principal.user, status=status, mine=True, cursor=cursor, limit=MY_SESSIONS_PAGE
    )
    return render(
        request,
        "sessions.html",
        page_context(
            principal,
            rows=[sessions.seen_by(row, principal.user) for row in rows],
            next_cursor=next_cursor,
            status=status,
            statuses=list(SessionStatus),
            # A viewer could start a session but never escalate it: not offered.
            can_start=is_senior(principal.user),
        ),
    )


@router.post("/sessions")
async def create_session(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    title: Annotated[str, Form(min_length=1, max_length=300)],
    message: Annotated[str, Form(max_length=MAX_MESSAGE_LENGTH)] = "",
) -> Response:
    text = message.strip()
    first = [MessageCreate(role=MessageRole.USER, content=text)] if text else []
    session = await sessions.create_session(
        db=db,
        actor=principal.user,
        title=title.strip() or "Untitled",
        messages=first,
        source=SessionSource.WEB,
    )
    return redirect(request, f"/sessions/{session.id}", notice="Session started.")


# ---- one session ------------------------------------------------------------------------


def _open_park_of(history: list[Handoff], user: User) -> Handoff | None:
    for h in history:
        if h.intent == Intent.PARK and h.status == HandoffStatus.OPEN and h.created_by == user.id:
            return h
    return None


def _session_actions(
    user: User,
    session: AISession,
    active: Handoff | None,
    my_park: Handoff | None,
    latest_escalation: Handoff | None,
) -> dict[str, bool]:
    owner = sessions.is_session_owner(session, user)
    # Once resolved, escalating again is the session creator's call, not the resolver's.
    resolved = latest_escalation is not None and latest_escalation.status == HandoffStatus.RESOLVED
    may_hand_off = not resolved or session.created_by == user.id
    senior = is_senior(user)
    claimed_by_me = active is not None and (
        active.status == HandoffStatus.CLAIMED and active.claimed_by == user.id
    )
    return {
        "can_hand_off": owner and senior and active is None and may_hand_off,
        "can_pick_up": senior
        and active is not None
        and active.status == HandoffStatus.OPEN
        and active.created_by != user.id,
        # The owner's escape hatch: they may put back what anyone holds.
        "can_release": claimed_by_me
        or (
            user.role == Role.OWNER
            and active is not None
            and active.status == HandoffStatus.CLAIMED
        ),
        "can_resolve": claimed_by_me,
        "can_cancel": active is not None and active.created_by == user.id,
        "can_resume": my_park is not None,
        "can_write": owner,
        # The senior who picked it up (or anyone who may write there) answers the escalator.
        "can_reply": owner and active is not None and active.created_by != user.id,
    }


@router.get("/sessions/{session_id}")
async def session_page(
    request: Request, db: SessionDep, principal: WebPrincipal, session_id: str
) -> Response:
    user = principal.user
    live_from = await views.latest_event_id(db=db, account_id=user.account_id)
    session = await sessions.get_visible_session(db=db, user=user, session_id=session_id)
    messages = await views.transcript(db=db, user=user, session_id=session.id)
    history, _ = await handoffs.list_handoffs(
        db=db, user=user, session_id=session.id, cursor=None, limit=100
    )
    names = await views.member_names(db=db, account_id=user.account_id)
    active = next((h for h in history if h.intent == Intent.ESCALATE and h.status in ACTIVE), None)
    my_park = _open_park_of(history, user)
    latest_escalation = active or next((h for h in history if h.intent == Intent.ESCALATE), None)
    report = (
        await views.delivery_report(db=db, user=user, handoff=latest_escalation)
        if latest_escalation is not None
        else None
    )
    timeline = (
        await escalation_timeline(db=db, handoff=latest_escalation)
        if latest_escalation is not None
        else None
    )
    return render(
        request,
        "session.html",
        page_context(
            principal,
            timeline=timeline,
            session=sessions.seen_by(session, user),
            messages=messages,
            history=history,
            names=names,
            active=active,
            my_park=my_park,
            latest_escalation=latest_escalation,
            report=report,
            live_from=live_from,
            note_max=MAX_NOTE_LENGTH,
            answer_max=MAX_ANSWER_LENGTH,
            via=agent_views.via_label(session),
            **_session_actions(user, session, active, my_park, latest_escalation),
        ),
    )


@router.post("/sessions/{session_id}/handoff")
async def hand_off(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    session_id: str,
    intent: Annotated[Intent, Form()],
    note: Annotated[str, Form(max_length=MAX_NOTE_LENGTH)] = "",
    tried: Annotated[str, Form(max_length=MAX_BRIEF_TEXT)] = "",
    error: Annotated[str, Form(max_length=MAX_BRIEF_TEXT)] = "",
    repo: Annotated[str, Form(max_length=500)] = "",
    branch: Annotated[str, Form(max_length=500)] = "",
    commit: Annotated[str, Form(max_length=500)] = "",
    files: Annotated[str, Form(max_length=MAX_BRIEF_TEXT)] = "",
    url: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    user = principal.user
    require_senior(user)
    here = f"/sessions/{session_id}"
    if intent == Intent.ESCALATE and not note.strip():
        # Whoever picks it up starts from this question: an empty one helps nobody.
        raise Bounce(here, error="Say what you need from a human before escalating.")
    brief = None
    if intent == Intent.ESCALATE:
        try:
            brief = agent_views.brief_from_form(
                note=note,
                tried=tried,
                error=error,
                repo=repo,
                branch=branch,
                commit=commit,
                files=files,
                url=url,
            )
        except ValueError as exc:
            raise Bounce(here, error=str(exc)) from exc
    try:
        handoff = await handoffs.create_handoff(
            db=db,
            actor=user,
            session_id=session_id,
            intent=intent,
            note=note.strip(),
            brief=brief,
            email_cap=ctx.settings.email_cap_per_hour,
        )
    except Conflict as exc:
        raise Bounce(here, error=exc.detail) from exc
    metrics.handoff_created(handoff.intent)
    if intent == Intent.ESCALATE:
        return redirect(request, here, notice="Escalated. Your team has been told.")
    return redirect(request, here, notice="Parked. Only you can see it; resume it any time.")


@router.post("/sessions/{session_id}/handoffs/{handoff_id}/{action}")
async def handoff_action(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    session_id: str,
    handoff_id: str,
    action: str,
    back: Annotated[str | None, Form()] = None,
    answer: Annotated[str, Form(max_length=MAX_ANSWER_LENGTH)] = "",
) -> Response:
    """Pick Up (claim), Release, Resolve (with an optional answer) or Withdraw (cancel)."""
    notices = {
        "claim": "You picked this up. The escalator has been told.",
        "release": "Released: it is back in the team queue.",
        "resolve": "Resolved. Thanks for helping out.",
        "cancel": "Escalation withdrawn.",
    }
    if action not in notices:
        raise NotFound("No such action")
    user = principal.user
    require_senior(user)
    here = f"/sessions/{session_id}"
    try:
        if action == "claim":
            await handoffs.claim_in_turn(
                db=db,
                gate=ctx.claims,
                reads=ctx.read_engine,
                actor=user,
                session_id=session_id,
                handoff_id=handoff_id,
            )
        elif action == "release":
            # A release tells the team again: its wave counts against the hourly email cap.
            await handoffs.release_handoff(
                db=db,
                actor=user,
                session_id=session_id,
                handoff_id=handoff_id,
                email_cap=ctx.settings.email_cap_per_hour,
            )
        elif action == "resolve":
            await handoffs.resolve_handoff(
                db=db,
                actor=user,
                session_id=session_id,
                handoff_id=handoff_id,
                answer=answer.strip() or None,
            )
        else:
            await handoffs.cancel_handoff(
                db=db, actor=user, session_id=session_id, handoff_id=handoff_id
            )
    except Conflict as exc:
        # Losing a Pick Up race is normal: say who has it and carry on.
        raise Bounce(local_path(back, here), error=exc.detail) from exc
    return redirect(request, here, notice=notices[action])


@router.post("/sessions/{session_id}/resume")
async def resume(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    session_id: str,
    back: Annotated[str | None, Form()] = None,
) -> Response:
    """Take a parked session up again: resolve the caller's open park of it."""
    user = principal.user
    history, _ = await handoffs.list_handoffs(
        db=db, user=user, session_id=session_id, cursor=None, limit=100
    )
    park = _open_park_of(history, user)
    if park is None:
        here = f"/sessions/{session_id}"
        return redirect(request, local_path(back, here), error="It isn't parked.")
    await handoffs.resolve_handoff(db=db, actor=user, session_id=session_id, handoff_id=park.id)
    return redirect(request, f"/sessions/{session_id}", notice="Resumed.")


@router.post("/sessions/{session_id}/messages")
async def add_note(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    session_id: str,
    content: Annotated[str, Form(min_length=1, max_length=MAX_MESSAGE_LENGTH)],
) -> Response:
    if not content.strip():
        return redirect(request, f"/sessions/{session_id}", error="Write something first.")
    await sessions.add_message(
        db=db,
        actor=principal.user,
        session_id=session_id,
        role=MessageRole.NOTE,
        content=content.strip(),
    )
    return redirect(request, f"/sessions/{session_id}#end")
