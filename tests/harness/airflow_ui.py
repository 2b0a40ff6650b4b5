"""Playwright helpers that drive the real Airflow 3.3 UI like a user: log in, trigger a run from the typed Params
form, open the plugin's views. Used by the browser tests against ``ui_stack``.

What the helpers rely on (Airflow 3.3.2, SimpleAuthManager):

* login page ``{base}/auth/login`` (a React app; ``/`` redirects there with ``?next=``): inputs ``name=username``,
  ``name=password``, button "Sign in". It POSTs ``/auth/token`` and its JS stores the JWT in the cookie ``_token``
  (path ``/``, not HttpOnly, SameSite Lax); the UI and the REST API accept that cookie.
* DAG page ``{base}/dags/{dag_id}``: button ``aria-label="Trigger Dag"`` opens a dialog "Trigger Dag - {dag_id}".
  Its "Run Parameters" accordion (open by default) holds one field per Param: a ``[data-scope=field]
  [data-part=root]`` group with a ``<label>`` (the Param's title, plus a "*" when required) and an input named
  ``element_{param key}``. Strings are text inputs, numbers Ark number inputs (``role=spinbutton``), enums
  react-select comboboxes (value in a hidden input), booleans switches, objects Monaco editors. The conf JSON
  editor (Monaco) sits in the collapsed "Advanced Options" accordion, next to "Run ID" and the run note.
  The dialog's "Trigger" button POSTs ``/api/v2/dags/{dag_id}/dagRuns`` with the whole form as ``conf`` and the
  UI then navigates to ``/dags/{dag_id}/runs/{run_id}``: the run id is read from that URL.
* a ``dag_run`` external view is a tab (a link) of the run page, ``/dags/{dag_id}/runs/{run_id}/plugin/{url_route}``,
  rendering its href in ``<iframe title="{name}">`` (``{DAG_ID}``/``{RUN_ID}`` URL-encoded into it).
* a ``nav`` external view is a menu item of its category's nav button ("Browse"), ``/plugin/{url_route}``, also an
  iframe; the UI mirrors the iframe's path into its own URL (``/plugin/{url_route}{iframe path}``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Frame, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

COOKIE = "_token"
TIMEOUT_MS = 30_000
FIELD_ROOT = "[data-scope=field][data-part=root]"
_PASTE = """text => {
    const data = new DataTransfer();
    data.setData("text/plain", text);
    document.activeElement.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                                                      cancelable: true}));
}"""


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def _expect_settled(page: Page, timeout: float) -> None:
    try:
        page.wait_for_load_state("networkidle", timeout=timeout)
    except PlaywrightTimeout:  # the UI polls running DAGs; idle is a nicety, not a requirement
        pass


def session_cookie(page: Page) -> dict | None:
    """The ``_token`` cookie the browser holds (Playwright's cookie dict), or None."""
    return next((c for c in page.context.cookies() if c["name"] == COOKIE), None)


def login(page: Page, base_url: str, username: str = "admin", password: str = "admin", *,
          timeout: float = TIMEOUT_MS) -> dict:
    """Log in through SimpleAuthManager's login form; returns the ``_token`` cookie the browser then holds."""
    base = _base(base_url)
    page.goto(f"{base}/auth/login?next={quote('/', safe='')}", timeout=timeout)
    user = page.locator("input[name=username]")
    user.wait_for(timeout=timeout)
    user.fill(username)
    page.locator("input[name=password]").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST" and urlsplit(r.url).path.endswith("/auth/token"),
                              timeout=timeout) as resp:
        page.get_by_role("button", name="Sign in").click()
    if resp.value.status >= 400:
        raise AssertionError(f"login as {username!r} refused: HTTP {resp.value.status}")
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=timeout)
    deadline = time.monotonic() + timeout / 1000
    while (cookie := session_cookie(page)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"logged in but no {COOKIE} cookie in the browser")
        page.wait_for_timeout(100)
    return cookie


def api_get(page: Page, base_url: str, path: str, **params: Any) -> Any:
    """GET a REST path (``/api/v2/...``) with the browser's cookies (the logged-in user), JSON-decoded."""
    resp = page.request.get(f"{_base(base_url)}{path}", params=params or None)
    if not resp.ok:
        raise AssertionError(f"GET {path}: HTTP {resp.status} {resp.text()[:500]}")
    return resp.json()


# --- the trigger dialog ---------------------------------------------------------------------------------------

def _label_re(title: str) -> re.Pattern:
    return re.compile(r"^\s*" + re.escape(title.strip()) + r"\s*\*?\s*$")


def _field_root(dialog: Locator, key: str) -> Locator:
    """The field group of a Param, by key (``name``/``id`` ``element_{key}``) or by its title (the label's text)."""
    by_key = dialog.locator(FIELD_ROOT).filter(
        has=dialog.page.locator(f'[name="element_{key}"], [id="element_{key}"], [id="number-input:element_{key}"]'))
    by_title = dialog.locator(FIELD_ROOT).filter(has=dialog.page.locator("label", has_text=_label_re(key)))
    return by_key.or_(by_title).first


def _expand_sections(dialog: Locator) -> None:
    """Open every collapsed accordion of the dialog ("Run Parameters", "Advanced Options")."""
    triggers = dialog.locator("[data-part=item-trigger][aria-expanded=false]")
    for _ in range(triggers.count()):
        triggers.first.click()


def _locate_field(dialog: Locator, key: str, timeout: float) -> Locator:
    root = _field_root(dialog, key)
    if not root.count():                                        # not rendered: open every collapsed section
        _expand_sections(dialog)
        try:
            root.wait_for(state="attached", timeout=timeout)
        except PlaywrightTimeout:
            titles = [t.strip().rstrip("*").strip() for t in dialog.locator(f"{FIELD_ROOT} label").all_inner_texts()]
            raise AssertionError(f"no Params field {key!r} in the trigger dialog; fields: {[t for t in titles if t]}")
    # inside a collapsed accordion ("Run Parameters" closed, "Advanced Options"): open that one
    # (an open item's content has no data-state at all, a closed one data-state="closed" and hidden)
    trigger = root.evaluate("e => { const c = e.closest('[data-part=item-content]');"
                            " return c && (c.hidden || c.dataset.state === 'closed')"
                            " ? c.getAttribute('aria-labelledby') : null; }")
    if trigger:
        dialog.locator(f'[id="{trigger}"]').click()
    root.wait_for(state="visible", timeout=timeout)
    root.scroll_into_view_if_needed(timeout=timeout)
    return root


def _same_number(shown: str, wanted: Any) -> bool:
    try:
        return float(shown.replace(",", "")) == float(wanted)
    except ValueError:
        return False


def _fill_field(root: Locator, key: str, value: Any) -> None:
    page = root.page
    combo = root.locator("input[role=combobox]")
    checkbox = root.locator("input[type=checkbox]")
    editor = root.locator(".monaco-editor")
    if combo.count():                                            # enum: react-select
        combo.first.click()
        combo.first.fill(str(value))
        option = page.get_by_role("option", name=str(value), exact=True)
        option.first.click()
        hidden = root.locator("input[type=hidden]")
        if hidden.count() and hidden.first.input_value() != str(value):
            raise AssertionError(f"{key}: picked {value!r}, the form holds {hidden.first.input_value()!r}")
    elif checkbox.count():                                       # boolean: switch / checkbox
        if checkbox.first.is_checked() != bool(value):
            root.locator("label:has(input[type=checkbox]), [data-part=control]").first.click()
        if checkbox.first.is_checked() != bool(value):
            raise AssertionError(f"{key}: could not set the switch to {bool(value)}")
    elif editor.count():                                         # object/array: Monaco; replace the whole text
        # Typing into this controlled editor garbles it (auto-closed brackets, an emptied editor snaps back to
        # "{}"): select all, then one synthetic paste replaces the selection in a single edit.
        text = value if isinstance(value, str) else json.dumps(value)
        editor.first.click()
        page.keyboard.press("ControlOrMeta+a")
        page.evaluate(_PASTE, text)
        root.locator("label").first.click()                     # blur (Tab would insert a tab character)
    else:                                                        # string / number / integer
        box = root.locator("input:not([type=hidden]), textarea").first
        text = "" if value is None else str(value)
        box.fill(text)
        box.press("Tab")                                         # number inputs commit on blur
        shown = box.input_value()
        if shown != text and not (isinstance(value, int | float) and _same_number(shown, value)):
            raise AssertionError(f"{key}: typed {text!r}, the field shows {shown!r}")


def open_trigger_dialog(page: Page, base_url: str, dag_id: str, *, timeout: float = TIMEOUT_MS) -> Locator:
    """Open the DAG's page and its Trigger dialog; returns the dialog once its Params form has rendered."""
    page.goto(f"{_base(base_url)}/dags/{quote(dag_id, safe='')}", timeout=timeout)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dialog = page.get_by_role("dialog").filter(has_text=dag_id)
    # under load the click is performed but Playwright's wait after it can time out (seen in CI with load 7 on 2
    # cores: "performing click action" then 30 s): what counts is whether the dialog opened; one more click if not
    for attempt in range(2):
        try:
            page.get_by_role("button", name="Trigger Dag").click(timeout=timeout)
        except PlaywrightTimeout:
            if attempt:
                raise
        try:
            dialog.wait_for(timeout=timeout)
            break
        except PlaywrightTimeout:
            if attempt:
                raise
    # the form is built from the DAG's params after a fetch: wait for a Params field or the conf editor
    dialog.locator(f'{FIELD_ROOT}:has([name^="element_"]), {FIELD_ROOT}:has(.monaco-editor)').first.wait_for(
        state="attached", timeout=timeout)
    return dialog


def trigger_with_form(page: Page, base_url: str, dag_id: str, values: dict[str, Any], *,
                      timeout: float = TIMEOUT_MS, screenshot: str | None = None) -> str:
    """Trigger ``dag_id`` from the UI's Trigger dialog with its typed Params form; returns the new run_id.

    ``values`` maps Param keys (``epochs``) or titles (``Epochs``) to values; other Params keep their defaults.
    The run_id is the one in the run page URL the UI navigates to after its POST succeeded.
    """
    base = _base(base_url)
    dialog = open_trigger_dialog(page, base, dag_id, timeout=timeout)
    for key, value in values.items():
        _fill_field(_locate_field(dialog, key, timeout), key, value)
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    submit = dialog.get_by_role("button", name="Trigger", exact=True)
    if not submit.is_enabled():
        errors = dialog.locator("[data-part=error-text], [role=alert]").all_inner_texts()
        raise AssertionError(f"the Trigger button is disabled; form errors: {errors}")
    post = f"/api/v2/dags/{dag_id}/dagRuns"
    with page.expect_response(lambda r: r.request.method == "POST" and unquote(urlsplit(r.url).path).endswith(post),
                              timeout=timeout) as resp:
        submit.click()
    if resp.value.status >= 400:
        try:
            detail = resp.value.text()[:1000]
        except PlaywrightError:
            detail = ""
        raise AssertionError(f"trigger refused: HTTP {resp.value.status} {detail}")
    runs = re.compile(rf"/dags/{re.escape(quote(dag_id, safe=''))}/runs/([^/?#]+)")
    page.wait_for_url(runs, timeout=timeout)
    return unquote(runs.search(urlsplit(page.url).path).group(1))


# --- the plugin's external views ------------------------------------------------------------------------------

def _iframe_frame(page: Page, name: str, path_prefix: str, timeout: float) -> Frame:
    iframe = page.locator(f'iframe[title="{name}"]')
    iframe.wait_for(timeout=timeout)
    handle = iframe.element_handle(timeout=timeout)
    deadline = time.monotonic() + timeout / 1000
    while True:
        frame = handle.content_frame()
        if frame is not None and unquote(urlsplit(frame.url).path).startswith(path_prefix):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"iframe {name!r} never loaded {path_prefix} (at {frame and frame.url})")
        page.wait_for_timeout(100)
    frame.wait_for_load_state("load", timeout=timeout)
    frame.locator("body").wait_for(timeout=timeout)
    return frame


def open_run_tab(page: Page, base_url: str, dag_id: str, run_id: str, *, name: str = "Gemini tuning",
                 url_route: str = "gemini-tuning-run", href_prefix: str = "/gemini-tuning/runs/",
                 timeout: float = TIMEOUT_MS) -> Frame:
    """Open the DAG run's page, click the plugin's tab; returns the tab's iframe Frame once it has loaded."""
    base = _base(base_url)
    page.goto(f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}", timeout=timeout)
    tab = page.locator(f'a[href$="/plugin/{url_route}"]').or_(page.get_by_role("link", name=name, exact=True))
    tab.first.click(timeout=timeout)
    page.wait_for_url(re.compile(rf"/plugin/{re.escape(url_route)}(/|$)"), timeout=timeout)
    return _iframe_frame(page, name, f"{href_prefix}{dag_id}/{run_id}", timeout)


def open_nav_view(page: Page, base_url: str, *, name: str = "Gemini tuning", menu: str = "Browse",
                  url_route: str = "gemini-tuning", href_prefix: str = "/gemini-tuning/",
                  timeout: float = TIMEOUT_MS) -> Frame:
    """Open the plugin's page from the nav menu (``menu`` button, then the ``name`` item); returns its Frame."""
    base = _base(base_url)
    if not urlsplit(page.url).netloc or not page.url.startswith(base):
        page.goto(f"{base}/", timeout=timeout)
    page.get_by_role("button", name=menu, exact=True).click(timeout=timeout)
    page.get_by_role("menuitem", name=name, exact=True).click(timeout=timeout)
    page.wait_for_url(re.compile(rf"/plugin/{re.escape(url_route)}(/|$)"), timeout=timeout)
    return _iframe_frame(page, name, href_prefix, timeout)
