"""The web UI: the page in a real headless Chromium (Debian chromium + chromium-driver, driven by Selenium) on a
tiny random model, the turn function without a browser, and `medtune ui` as a process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("gradio")
from medtune.assistant import Assistant, GenParams, load_assistant  # noqa: E402
from medtune.assistant.engines import Generation  # noqa: E402
from medtune.safety.policy import DISCLAIMER  # noqa: E402
from medtune.serve.ui import build_ui, launch_ui, respond  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EMERGENCY = "My father just collapsed and he is not breathing, what do I do?"
QUESTION = "What is anemia?"
SCRATCH = Path("/tmp/scratch")
MEDTUNE = Path(sys.executable).with_name("medtune")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_assistant(tiny_model_dir: Path) -> Assistant:
    return load_assistant(str(tiny_model_dir), "transformers", defaults=GenParams(max_tokens=32))


@pytest.fixture()
def page_url(tiny_assistant: Assistant) -> Iterator[str]:
    demo = build_ui(tiny_assistant)
    _, url = launch_ui(demo, port=free_port(), block=False)
    yield url
    demo.close()


@pytest.fixture()
def browser(tmp_path: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them: apt-get install -y "
                    "chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def test_page_streams_an_answer_and_marks_an_emergency(page_url: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(page_url)
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#medtune-question textarea"))
    assert "It is not a medical device" in browser.find_element(By.ID, "medtune-disclaimer").text
    assert "What are the early signs of type 2 diabetes?" in browser.find_element(By.ID, "medtune-examples").text
    browser.find_element(By.CSS_SELECTOR, "#medtune-settings button").click()  # the controls sit in an accordion
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#medtune-temperature input[type=number]"))
    assert browser.find_element(By.CSS_SELECTOR, "#medtune-temperature input[type=number]").get_attribute("value") \
        == "0.3"
    assert browser.find_element(By.CSS_SELECTOR, "#medtune-max-tokens input[type=number]").get_attribute("value") \
        == "32"

    def idle(d) -> bool:  # Gradio hides the chat's status tracker when no event is pending
        tracker = d.find_element(By.CSS_SELECTOR, "#medtune-chat [data-testid=status-tracker]")
        return "hide" in (tracker.get_attribute("class") or "").split()

    def bots(d) -> list:
        return d.find_elements(By.CSS_SELECTOR, "#medtune-chat [data-testid=bot]")

    box.send_keys(QUESTION)
    browser.find_element(By.ID, "medtune-send").click()
    # the answer is done when the output guard's closing disclaimer has been released
    wait.until(lambda d: bots(d) and DISCLAIMER in bots(d)[-1].text and idle(d))
    users = browser.find_elements(By.CSS_SELECTOR, "#medtune-chat [data-testid=user]")
    assert [u.text for u in users] == [QUESTION]
    answer = bots(browser)[-1].text
    assert answer.replace(DISCLAIMER, "").strip(), "the model's own text never appeared"
    assert not browser.find_elements(By.CSS_SELECTOR, "#medtune-chat .medtune-escalate")
    assert box.get_attribute("value") == ""

    box.send_keys(EMERGENCY)
    browser.find_element(By.ID, "medtune-send").click()
    alert = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#medtune-chat [data-testid=bot] .medtune-escalate"))
    wait.until(idle)
    assert alert.text.startswith("⚠ Emergency")
    assert "Call your local emergency number now (911 in the US" in alert.text
    # marked distinctly: a red border around the fixed text, a red title
    assert alert.value_of_css_property("border-top-color").startswith(("rgb(220, 38, 38", "rgba(220, 38, 38, 1"))
    assert alert.value_of_css_property("border-top-width") == "3px"
    assert len(bots(browser)) == 2

    shot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if SCRATCH.is_dir():
        shutil.copy(shot, SCRATCH / "ui.png")

    browser.find_element(By.ID, "medtune-reset").click()
    wait.until(lambda d: not bots(d))


# ---- the turn function on its own: what the engine receives, what the page shows ----

class Recording:
    """A real engine that records the conversation and parameters of each generation."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, []
        self.name, self.context_length = engine.name, engine.context_length

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.engine.count_tokens(messages)

    def stream(self, messages: list[dict[str, str]], params: GenParams, gen: Generation,
               cancel: threading.Event) -> Iterator[str]:
        self.calls.append(([dict(m) for m in messages], params))
        yield from self.engine.stream(messages, params, gen, cancel)


def test_turns_keep_plain_history_and_use_the_controls(tiny_assistant: Assistant) -> None:
    rec = Recording(tiny_assistant.engine)
    assistant = Assistant(rec, system_prompt="You are careful.", guard=tiny_assistant.guard)
    steps = list(respond(assistant, QUESTION, [], [], 0.0, 24))
    assert steps[0] == ([{"role": "user", "content": QUESTION}], [], "")  # the question shows at once
    texts = [shown[-1]["content"] for shown, _, _ in steps[1:]]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), "streamed text must only grow"
    shown, convo, box = steps[-1]
    assert box == "" and [m["role"] for m in convo] == ["user", "assistant"]
    assert convo[1]["content"] and texts[-1].startswith(convo[1]["content"])
    _, params = rec.calls[0]
    assert params.temperature == 0.0 and params.max_tokens == 24

    shown, convo, _ = list(respond(assistant, EMERGENCY, shown, convo, 0.3, 24))[-1]
    assert len(rec.calls) == 1  # the guard answered; the engine never saw it
    assert 'class="medtune-escalate"' in shown[-1]["content"] and "911" in shown[-1]["content"]
    assert "<" not in convo[-1]["content"] and "911" in convo[-1]["content"]  # the model gets plain text

    shown, convo, _ = list(respond(assistant, "What is iron?", [], [], 0.5, 1))[-1]
    assert [m["role"] for m in rec.calls[-1][0]] == ["system", "user"]
    assert shown[-1]["content"].endswith("*(cut at 1 tokens: raise Max new tokens in Settings)*")
    assert "cut at" not in convo[-1]["content"]  # a note for the reader, not part of the conversation


def test_too_long_a_message_goes_back_to_the_box(tiny_assistant: Assistant) -> None:
    long = "word " * 3000
    steps = list(respond(tiny_assistant, long, [], [], 0.3, 32))
    assert steps[-1] == ([], [], long)  # nothing kept; the question is back for editing


def test_medtune_ui_serves_the_page_and_stops_on_ctrl_c(tiny_model_dir: Path) -> None:
    import httpx

    if not MEDTUNE.exists():
        pytest.skip(f"{MEDTUNE} not installed (make setup)")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(MEDTUNE), "ui", "--model", str(tiny_model_dir), "--engine", "transformers",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in test_chat.spawn
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200, proc.stdout.read() if proc.poll() is not None else ""
        assert "medtune chat" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), out
    assert "Traceback" not in out
