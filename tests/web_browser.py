#!/usr/bin/env python3
"""The pgvault console in a real browser (headless Chromium through chromedriver/selenium).

Run by tests/web_cluster.sh against a running `pgvault serve`; prints "ok - ..." or
"not ok - ..." per check. Environment: BASE_URL, USER_NAME / USER_PASSWORD (a vault_admin),
READER_NAME (a vault_viewer with the same password), VAULT_READER (a vault_reader, same password), SHOTS (screenshot directory), CHECK_SQL
(a psql command line, the SQL appended, to look at the database as the superuser).

MODE=readme (scripts/screenshots.sh): only log in as USER_NAME and save the README's images,
web-console.png (1400x900) and web-console-phone.png (390x844), into SHOTS, checking that
nothing in the list wraps or overflows; READER_NAME, VAULT_READER and CHECK_SQL are not needed.
"""
import os
import shlex
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["BASE_URL"]
USER, PASSWORD = os.environ["USER_NAME"], os.environ["USER_PASSWORD"]
MODE = os.environ.get("MODE", "test")
VIEWER = os.environ.get("READER_NAME", "")
READER = os.environ.get("VAULT_READER", "")
SHOTS = os.environ["SHOTS"]
CHECK_SQL = shlex.split(os.environ.get("CHECK_SQL", ""))
failed = 0


def check(name, expected, actual):
    global failed
    if expected == actual:
        print(f"ok - browser: {name}")
    else:
        failed += 1
        print(f"not ok - browser: {name}\n    expected: {expected!r}\n    actual:   {actual!r}")


def sql(q):
    return subprocess.run(CHECK_SQL + [q], capture_output=True, text=True).stdout.strip()


def wait(driver, cond, what, timeout=10):
    try:
        # The list is re-rendered after each change: elements found a moment ago go stale.
        return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(cond)
    except TimeoutException:
        return None


def row(driver, name):
    """The list's row for NAME; looked up again when the list was re-rendered under the lookup
    (a save reloads the list after its message shows)."""
    for _ in range(50):
        try:
            for tr in driver.find_elements(By.CSS_SELECTOR, "#secrets-body tr"):
                if tr.get_attribute("data-name") == name:
                    return tr
            return None
        except StaleElementReferenceException:
            time.sleep(0.1)
    return None


def click_in_row(driver, name, css):
    """Clicks a button of a row, again if the list was re-rendered under the click."""
    def go(d):
        r = row(d, name)
        if r is None:
            return False
        r.find_element(By.CSS_SELECTOR, css).click()
        return True
    return wait(driver, go, css)


def no_alert(driver):
    try:
        driver.switch_to.alert
        return False
    except NoAlertPresentException:
        return True


def typed(driver, element_id, text):
    e = driver.find_element(By.ID, element_id)
    e.clear()
    e.send_keys(text)


def login(driver, user):
    driver.get(BASE + "/")
    wait(driver, lambda d: d.find_element(By.ID, "login-user").is_displayed(), "login form")
    typed(driver, "login-user", user)
    typed(driver, "login-password", PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    return wait(driver, lambda d: user in d.find_element(By.ID, "whoami").text, "logged in")


def save_secret(driver, name, value, description="", tags=""):
    driver.find_element(By.ID, "new-secret").click()
    typed(driver, "edit-name", name)
    typed(driver, "edit-value", value)
    typed(driver, "edit-description", description)
    typed(driver, "edit-tags", tags)
    driver.find_element(By.ID, "edit-save").click()
    return wait(driver, lambda d: row(d, name), "row of " + name)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pgvault-chromium-") as profile:
        browse(profile)


def browse(profile):
    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,900", "--user-data-dir=" + profile) + (("--hide-scrollbars",) if MODE == "readme" else ()):
        opts.add_argument(flag)
    opts.binary_location = "/usr/bin/chromium"
    # The test CA is not in Chromium's store; the connection is still HTTPS (Secure cookies).
    opts.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        readme(driver) if MODE == "readme" else run(driver)
    finally:
        driver.quit()


def one_line(driver, element):
    """True when ELEMENT's text takes a single line box (no wrapped name or row of buttons)."""
    return driver.execute_script("""
        const tops = new Set();
        for (const n of arguments[0].childNodes) {
          let boxes = [];
          if (n.nodeType === Node.TEXT_NODE) {
            const r = document.createRange(); r.selectNodeContents(n); boxes = [...r.getClientRects()];
          } else if (n.nodeType === Node.ELEMENT_NODE) {
            boxes = [...n.getClientRects()];
          }
          for (const b of boxes) if (b.width > 0) tops.add(Math.round(b.top));
        }
        return tops.size <= 1;""", element)


def readme(driver):
    """The README's screenshots: the list as a vault_admin sees it, wide and at a phone's width."""
    check("the admin logs in through the form", True, bool(login(driver, USER)))
    rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#secrets-body tr"), "list")
    names = [r.get_attribute("data-name") for r in rows or []]
    check("the list shows the example secrets, by name", sorted(names), names)
    check("one of them is marked as expiring soon", True,
          len(driver.find_elements(By.CSS_SELECTOR, "#secrets-body tr.expiring")) >= 1)
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    for width, height, file in ((1400, 900, "web-console.png"), (390, 844, "web-console-phone.png")):
        driver.set_window_size(width, height)
        time.sleep(0.5)
        # The window's inner size is what the picture shows.
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        if inner != [width, height]:
            driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])
            time.sleep(0.5)
        wrapped = [r.get_attribute("data-name") for r in driver.find_elements(By.CSS_SELECTOR, "#secrets-body tr")
                   if not all(one_line(driver, c) for c in r.find_elements(By.CSS_SELECTOR, "td.name, td.actions, td.value"))]
        check(f"at {width}x{height} no name, value or row of buttons wraps", [], wrapped)
        overflowing = driver.execute_script(
            "return [...document.querySelectorAll('#secrets-body td')].filter((td) => td.scrollWidth > td.clientWidth + 1)"
            ".map((td) => td.parentElement.dataset.name + ' ' + td.className)")
        check(f"at {width}x{height} nothing overflows its cell", [], overflowing)
        check(f"at {width}x{height} the list is not cut off (no sideways scrolling in its box)", True,
              driver.execute_script("const w = document.getElementById('secrets-wrap'); return w.scrollWidth <= w.clientWidth"))
        check(f"at {width}x{height} the page does not overflow sideways", True,
              driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))
        driver.save_screenshot(os.path.join(SHOTS, file))


def run(driver):
    v1, v2 = "sk-browser-0123456789-first", "sk-browser-9876543210-second"
    check("the admin logs in through the form", True, bool(login(driver, USER)))
    check("the admin is offered New secret and the audit log", (True, True),
          (driver.find_element(By.ID, "new-secret").is_displayed(), driver.find_element(By.ID, "show-audit").is_displayed()))

    tr = save_secret(driver, "browser_key", v1, "made in a browser", "prod,web")
    check("a secret created in the form appears in the list", True, tr is not None)
    check("stored with the typed value", v1, sql("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'browser_key'"))
    tr = row(driver, "browser_key")
    check("the list shows it masked", "sk-b****irst", tr.find_element(By.CSS_SELECTOR, "td.value").text)
    check("the value is nowhere in the page", False, v1 in driver.page_source)
    check("tags and description shown", ("prod web", "made in a browser"),
          (" ".join(t.text for t in tr.find_elements(By.CSS_SELECTOR, ".tag")), tr.find_element(By.CSS_SELECTOR, "td.description").text))

    created = tr.find_element(By.CSS_SELECTOR, "td.created").text
    check("the list shows when it was created", (True, True), (created.startswith("20"), created.endswith("UTC")))
    style = lambda e, p: driver.execute_script("return getComputedStyle(arguments[0])[arguments[1]]", e, p)
    check("names and the row's actions stay on one line", ("nowrap", "nowrap"),
          (style(tr.find_element(By.CSS_SELECTOR, "td.name"), "whiteSpace"),
           style(tr.find_element(By.CSS_SELECTOR, "td.actions"), "whiteSpace")))

    tr.find_element(By.CSS_SELECTOR, "button.reveal").click()
    shown = wait(driver, lambda d: row(d, "browser_key").find_element(By.CSS_SELECTOR, "td.value").text == v1, "revealed")
    check("Reveal shows the value", True, bool(shown))
    check("a revealed value has a Copy button", True,
          row(driver, "browser_key").find_element(By.CSS_SELECTOR, "button.copy").is_displayed())
    row(driver, "browser_key").find_element(By.CSS_SELECTOR, "button.reveal").click()
    check("Hide masks it again, and the value leaves the page", ("sk-b****irst", False),
          (row(driver, "browser_key").find_element(By.CSS_SELECTOR, "td.value").text, v1 in driver.page_source))

    row(driver, "browser_key").find_element(By.CSS_SELECTOR, "button.edit").click()
    check("the edit form never gets the value back", "", driver.find_element(By.ID, "edit-value").get_attribute("value"))
    check("the form opens above the list, where the user is looking", True,
          driver.find_element(By.ID, "editor").location["y"] < driver.find_element(By.ID, "secrets").location["y"])
    typed(driver, "edit-value", v2)
    driver.find_element(By.ID, "edit-save").click()
    ok = wait(driver, lambda d: "Saved" in d.find_element(By.ID, "message").text, "saved")
    check("editing saves a new value", (True, v2),
          (bool(ok), sql("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'browser_key'")))

    row(driver, "browser_key").find_element(By.CSS_SELECTOR, "button.show-versions").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#versions-body button.rollback"), "versions")
    check("the versions panel lists 2 versions", 2, len(driver.find_elements(By.CSS_SELECTOR, "#versions-body tr")))
    driver.find_element(By.CSS_SELECTOR, "#versions-body button.rollback").click()
    ok = wait(driver, lambda d: "Rolled" in d.find_element(By.ID, "message").text, "rolled back")
    check("rollback brings version 1's value back", (True, v1),
          (bool(ok), sql("SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'browser_key'")))
    driver.find_element(By.ID, "versions-close").click()

    click_in_row(driver, "browser_key", "button.show-grants")
    wait(driver, lambda d: d.find_element(By.ID, "grants").is_displayed(), "grants panel")
    typed(driver, "grant-role", VIEWER)
    driver.find_element(By.ID, "grant-add").click()
    ok = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#grants-body button.revoke"), "granted")
    check("a grant made in the grants panel", (True, VIEWER),
          (bool(ok), sql("SELECT string_agg(grantee::text, ',') FROM vault.secret_acl")))
    driver.find_element(By.CSS_SELECTOR, "#grants-body button.revoke").click()
    ok = wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "#grants-body button.revoke"), "revoked")
    check("and revoked there", (True, "0"), (bool(ok), sql("SELECT count(*) FROM vault.secret_acl")))
    driver.find_element(By.ID, "grants-close").click()

    xss = "<img src=x onerror=window.pwned=1>"
    tr = save_secret(driver, xss, "xss-value-0123456789", '"><script>window.pwned=2</script>', "<b>t</b>")
    check("a secret named like HTML is listed", True, tr is not None)
    if tr is not None:
        check("its name shows as text", xss, tr.find_element(By.CSS_SELECTOR, "td.name").text)
        check("its description shows as text", '"><script>window.pwned=2</script>', tr.find_element(By.CSS_SELECTOR, "td.description").text)
    time.sleep(0.5)
    check("no script from a name or description ran", "undefined", driver.execute_script("return typeof window.pwned"))
    check("no element was made from them", 0, len(driver.find_elements(By.CSS_SELECTOR, "#secrets-body img, #secrets-body script")))
    check("no dialog opened", True, no_alert(driver))
    driver.save_screenshot(os.path.join(SHOTS, "console-admin.png"))
    driver.set_window_size(390, 844)
    check("at a phone's width the page does not overflow sideways (the list scrolls in its box)", True,
          driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))
    driver.save_screenshot(os.path.join(SHOTS, "console-phone.png"))
    driver.set_window_size(1400, 900)

    driver.find_element(By.ID, "show-audit").click()
    ok = wait(driver, lambda d: any(td.text == "rollback" for td in d.find_elements(By.CSS_SELECTOR, "#audit-body td")), "audit")
    check("the audit log shows the rollback", True, bool(ok))
    driver.find_element(By.ID, "audit-close").click()

    check("the admin is offered Keys and Verify", (True, True),
          (driver.find_element(By.ID, "show-keys").is_displayed(), driver.find_element(By.ID, "show-verify").is_displayed()))
    driver.find_element(By.ID, "show-keys").click()
    ok = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#keys-body tr.default-key"), "keys")
    check("the keys panel shows every key, the default one marked", (True, sql("SELECT count(*) FROM vault.keys"), "default"),
          (bool(ok), str(len(driver.find_elements(By.CSS_SELECTOR, "#keys-body tr"))),
           driver.find_element(By.CSS_SELECTOR, "#keys-body tr.default-key td.key-status").text))
    driver.find_element(By.ID, "keys-close").click()
    # A secret damaged past the trigger, as broken storage would leave it.
    sql("SELECT vault.create_secret('browser-dmg-1-0123456789', 'browser_dmg_one'), "
        "vault.create_secret('browser-dmg-2-0123456789', 'browser_dmg_two'); "
        "ALTER TABLE vault.secrets DISABLE TRIGGER secrets_encrypt; "
        "UPDATE vault.secrets t SET secret = o.secret, nonce = o.nonce FROM vault.secrets o "
        "WHERE t.name = 'browser_dmg_two' AND o.name = 'browser_dmg_one'; "
        "ALTER TABLE vault.secrets ENABLE TRIGGER secrets_encrypt")
    driver.find_element(By.ID, "show-verify").click()
    ok = wait(driver, lambda d: "need attention" in d.find_element(By.ID, "verify-summary").text, "verify")
    check("Verify names the secret that does not decrypt", (True, ["browser_dmg_two tampered"]),
          (bool(ok), [" ".join(td.text for td in tr.find_elements(By.CSS_SELECTOR, "td.name, td.verify-status"))
                      for tr in driver.find_elements(By.CSS_SELECTOR, "#verify-body tr")]))
    check("and shows no value", False, "browser-dmg" in driver.page_source)
    driver.save_screenshot(os.path.join(SHOTS, "console-verify.png"))
    sql("DELETE FROM vault.secrets WHERE name LIKE 'browser_dmg_%'")
    driver.find_element(By.ID, "show-verify").click()
    ok = wait(driver, lambda d: "all decrypt" in d.find_element(By.ID, "verify-summary").text, "verify again")
    check("once it is gone, Verify says all decrypt", (True, 0), (bool(ok), len(driver.find_elements(By.CSS_SELECTOR, "#verify-body tr"))))
    driver.find_element(By.ID, "verify-close").click()

    # A form on another origin posting to the console: no cookie goes (SameSite=Strict), no
    # CSRF token either; nothing changes.
    before = sql("SELECT version FROM vault.secrets WHERE name = 'browser_key'")
    page = ("data:text/html,<form id=f method=POST action='" + BASE +
            "/api/v1/secrets/browser_key/rollback'><input name=version value=1><button id=go>go</button></form>")
    driver.get(page)
    driver.find_element(By.ID, "go").click()
    time.sleep(1)
    check("a cross-site form post changes nothing", before, sql("SELECT version FROM vault.secrets WHERE name = 'browser_key'"))

    driver.get(BASE + "/")
    wait(driver, lambda d: row(d, "browser_key"), "list again")
    tr = row(driver, "browser_key")
    tr.find_element(By.CSS_SELECTOR, "button.delete").click()
    check("delete asks first; nothing is deleted yet", "1", sql("SELECT count(*) FROM vault.secrets WHERE name = 'browser_key'"))
    row(driver, "browser_key").find_element(By.CSS_SELECTOR, "button.confirm-delete").click()
    gone = wait(driver, lambda d: row(d, "browser_key") is None, "deleted")
    check("confirmed, the secret is gone", (True, "0"),
          (bool(gone), sql("SELECT count(*) FROM vault.secrets WHERE name = 'browser_key'")))

    driver.find_element(By.ID, "logout").click()
    wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed(), "logged out")
    check("a viewer logs in", True, bool(login(driver, VIEWER)))
    wait(driver, lambda d: row(d, xss), "viewer list")
    check("the viewer sees the list but no Reveal, Edit, New or Audit",
          (True, 0, 0, False, False),
          (row(driver, xss) is not None, len(driver.find_elements(By.CSS_SELECTOR, "button.reveal")),
           len(driver.find_elements(By.CSS_SELECTOR, "button.edit")),
           driver.find_element(By.ID, "new-secret").is_displayed(), driver.find_element(By.ID, "show-audit").is_displayed()))
    check("nor Keys or Verify", (False, False),
          (driver.find_element(By.ID, "show-keys").is_displayed(), driver.find_element(By.ID, "show-verify").is_displayed()))
    driver.save_screenshot(os.path.join(SHOTS, "console-viewer.png"))

    driver.find_element(By.ID, "logout").click()
    wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed(), "logged out")
    check("a vault_reader logs in", True, bool(login(driver, READER)))
    wait(driver, lambda d: row(d, xss), "reader list")
    check("the reader gets Reveal, but no Keys or Verify", (True, False, False),
          (len(driver.find_elements(By.CSS_SELECTOR, "button.reveal")) > 0,
           driver.find_element(By.ID, "show-keys").is_displayed(), driver.find_element(By.ID, "show-verify").is_displayed()))


if __name__ == "__main__":
    main()
    sys.exit(1 if failed else 0)
