"""Operator options: list, set, unset (C1)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from gim_tasks.errors import GimError
from gim_tasks.options import store
from gim_tasks.options.registry import OptionError
from gim_tasks.web import schemas as sc
from gim_tasks.web.access import Admin, PageAdmin, PageViewer, Viewer
from gim_tasks.web.kit import AUTH, NUL, KitDep
from gim_tasks.web.schemas import errors, ok

router = APIRouter()


@router.get(
    "/api/options",
    tags=["options"],
    response_model=None,
    responses={**ok(sc.OptionsReply, "Options and findings."), **AUTH},
)
def api_options(kit: KitDep, who: Viewer) -> dict[str, Any]:
    """Every option with its value, and the configuration check's findings."""
    rows, report = kit.option_rows()
    return {"options": rows, "check": [f.as_dict() for f in report.findings]}


@router.put(
    "/api/options/{section}/{name}",
    tags=["options"],
    response_model=None,
    responses={
        **ok(sc.OptionUpdate, "Stored."),
        **AUTH,
        **errors(
            400,
            404,
            413,
            422,
            unchecked="a value the option does not allow (its `allowed` in GET /api/options; "
            "the document cannot tie a value's form to the name in the path); " + NUL,
        ),
    },
)
def api_set_option(
    kit: KitDep, who: Admin, section: sc.OptionSection, name: sc.OptionName, body: sc.OptionValue
) -> dict[str, Any]:
    """Set one option (admin). An invalid value is refused (400, naming what is allowed)
    and nothing is stored; a name the section does not have is a 404."""
    section_text, name_text = kit.known_option(section, name)
    update = store.set_option(
        kit.engine, section_text, name_text, body.value, who.name, kit.settings.output_directory
    )
    return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}


@router.delete(
    "/api/options/{section}/{name}",
    tags=["options"],
    response_model=None,
    responses={**ok(sc.OptionUpdate, "Back to its default."), **AUTH, **errors(404, 422)},
)
def api_unset_option(
    kit: KitDep, who: Admin, section: sc.OptionSection, name: sc.OptionName
) -> dict[str, Any]:
    """Return one option to its default (admin)."""
    section_text, name_text = kit.known_option(section, name)
    update = store.unset_option(kit.engine, section_text, name_text, who.name)
    return {"option": f"[{section}] {name}", "old": update.old, "new": update.new}


@router.get("/options", response_class=HTMLResponse, include_in_schema=False)
def options_page(kit: KitDep, request: Request, who: PageViewer) -> Response:
    from gim_tasks.runtime import holds

    rows, report = kit.option_rows()
    blackouts = holds.listing(kit.engine)["blackouts"]
    return kit.page(request, "options.html", who, options=rows, report=report, blackouts=blackouts)


@router.post("/options", include_in_schema=False)
def options_edit(
    kit: KitDep,
    request: Request,
    who: PageAdmin,
    section: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=64)],
    value: Annotated[str, Form(max_length=2000)] = "",
    reset: Annotated[bool, Form()] = False,
) -> Response:
    try:
        if reset:
            update = store.unset_option(kit.engine, section, name, who.name)
        else:
            update = store.set_option(
                kit.engine, section, name, value, who.name, kit.settings.output_directory
            )
        notice = f"saved: {update}"
    except (GimError, OptionError) as error:
        notice = f"not saved: {error}"
    return kit.back(request, "/options", notice)
