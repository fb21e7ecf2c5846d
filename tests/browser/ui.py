"""Playwright helpers for Airflow 3's React UI, driving Debian's Chromium (no browser download)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling Google services (the test
# machine has no internet); --headless etc. are explicit so the flags are the same everywhere.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


@contextmanager
def chromium_page(width: int = 1400, height: int = 4800) -> Iterator[Any]:
    """A page of a headless system Chromium; tall, so a whole Add Connection dialog fits a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.set_default_navigation_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def login(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the simple auth manager's login page, as a user would."""
    page.goto(base_url + "/")
    page.wait_for_url(re.compile(r".*/auth/login.*"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.get_by_role("button", name="Admin").wait_for()


class ConnectionForm:
    """The "Add Connection" dialog of the Connections page."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.dialog: Any = None

    def open(self, conn_id: str, conn_type_label: str) -> None:
        self.page.goto(self.base_url + "/connections")
        self.page.get_by_role("button", name="Add Connection").click()
        self.dialog = self.page.get_by_role("dialog")
        self.dialog.get_by_role("heading", name="Add Connection").wait_for()
        self.dialog.get_by_label("Connection ID").fill(conn_id)
        combo = self.dialog.get_by_role("combobox", name="Connection Type")
        combo.click()
        combo.fill(conn_type_label)
        self.page.get_by_role("option", name=conn_type_label, exact=True).click()
        # The standard fields of our form are relabelled: wait until they are there.
        self.dialog.get_by_text("Standard Fields").wait_for()

    def expand_extra_fields(self) -> None:
        button = self.dialog.get_by_role("button", name="Extra Fields", exact=True)
        if button.get_attribute("aria-expanded") != "true":
            button.click()
        self.page.locator("[id^='element_']").first.wait_for()

    def text(self, label: str, value: str) -> None:
        """A standard field (Login, Password, ...) by its (relabelled) label."""
        field = self.dialog.get_by_label(label, exact=True)
        field.fill(value)
        field.blur()

    # Extra fields (our conn-fields) are found by their extra name: the form renders each one as
    # ``element_<name>`` (text, textarea, select) or ``number-input:element_<name>`` /
    # ``switch:element_<name>``; the visible label is checked by ``extra_label``.
    def extra_label(self, name: str) -> str:
        root = self.dialog.locator(
            f"[id='element_{name}'], [id='number-input:element_{name}'], [id='switch:element_{name}']"
        ).first
        group = root.locator("xpath=ancestor::*[@role='group'][1]")
        return group.locator("label").first.inner_text().strip()

    def extra_text(self, name: str, value: str) -> None:
        field = self.dialog.locator(f"[id='element_{name}']")
        field.fill(value)
        field.blur()

    def extra_number(self, name: str, value: int) -> None:
        field = self.dialog.locator(f"[id='number-input:element_{name}'] input")
        field.fill(str(value))
        field.blur()

    def extra_lines(self, name: str, values: list[str]) -> None:
        field = self.dialog.locator(f"textarea[id='element_{name}']")
        field.fill("\n".join(values))
        field.blur()

    def extra_switch(self, name: str, on: bool) -> None:
        root = self.dialog.locator(f"[id='switch:element_{name}']")
        if (root.get_attribute("data-state") == "checked") != on:
            root.click()
        expected = "checked" if on else "unchecked"
        self.page.wait_for_function(
            "([id, state]) => document.getElementById(id)?.getAttribute('data-state') === state",
            arg=[f"switch:element_{name}", expected],
        )

    def extra_choice(self, name: str, option: str) -> None:
        combo = self.dialog.locator(f"[id='element_{name}'] input[role='combobox']")
        combo.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.dialog.locator(f"[id='element_{name}']", has_text=option).wait_for()

    def extra_json(self, extra: dict[str, Any]) -> None:
        """Replace the "Extra Fields JSON" editor's text with ``extra``, as a user pasting it would.

        The editor is Monaco: typed brackets and quotes are auto-closed and the form re-renders on
        every key, which loses characters; a paste event inserts the text as it is.
        """
        from playwright.sync_api import expect

        button = self.dialog.get_by_role("button", name="Extra Fields JSON", exact=True)
        if button.get_attribute("aria-expanded") != "true":
            button.click()
        editor = self.dialog.locator(".monaco-editor").first
        editor.click()
        self.page.keyboard.press("Control+A")
        editor.locator("textarea").evaluate(
            """(area, text) => {
                const data = new DataTransfer();
                data.setData("text/plain", text);
                const paste = {clipboardData: data, bubbles: true, cancelable: true};
                area.dispatchEvent(new ClipboardEvent("paste", paste));
            }""",
            json.dumps(extra, indent=2),
        )
        expect(self.dialog.get_by_role("button", name="Save")).to_be_enabled(timeout=TIMEOUT_MS)  # valid JSON

    def extra_value(self, name: str) -> str:
        """The value of a text extra field (after expanding "Extra Fields")."""
        return self.dialog.locator(f"[id='element_{name}']").input_value()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dialog.screenshot(path=str(path))
        return path

    def save(self) -> None:
        self.dialog.get_by_role("button", name="Save").click()
        self.dialog.wait_for(state="detached")


def add_variable(page: Any, base_url: str, key: str, value: str, description: str = "") -> None:
    """Add a Variable through the Variables page's "Add Variable" dialog."""
    page.goto(base_url + "/variables")
    page.get_by_role("button", name="Add Variable").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name="Add Variable").wait_for()
    dialog.get_by_label("Key").fill(key)
    dialog.get_by_label("Value").fill(value)
    dialog.get_by_label("Description").fill(description)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="detached")


def click_test_connection(page: Any, base_url: str, conn_id: str, screenshot: Path) -> tuple[str, str]:
    """Click a connection's Test Connection button on the Connections page; return the title and
    the message of the notification it shows, and save a screenshot of the page with it."""
    page.goto(base_url + "/connections")
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))
    row.get_by_role("button", name="Test Connection").click()
    toast = page.locator("[role='status'], [role='alert']").filter(has_text="Test Connection")
    toast.first.wait_for()
    title, _, text = toast.first.inner_text().strip().partition("\n")
    # The notification slides in: the screenshot waits for its animations to end.
    toast.first.evaluate("el => Promise.all(el.getAnimations({subtree: true}).map(a => a.finished))")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    return title.strip(), text.strip()
