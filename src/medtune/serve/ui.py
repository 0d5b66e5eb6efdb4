"""The web UI: a Gradio chat over the guarded Assistant, for people who would rather not use a terminal.

The page shows the disclaimer above the chat, example questions, temperature and max-token controls, and
streams each answer as the Assistant releases it. The conversation sent to the Assistant is kept in its own
state (plain role/content text), apart from what the chat window shows, so the "⚠ Emergency" header and the
red border of a guarded reply never reach the model. No guard logic here: the verdict, the fixed texts and
the output guard all come from the Assistant. Analytics are off and nothing is fetched from the network.

Run as: medtune ui --model default [--engine llama.cpp] [--host 127.0.0.1] [--port 7860]
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from medtune.assistant import Assistant, GenParams  # noqa: E402
from medtune.errors import MedtuneError  # noqa: E402
from medtune.safety.policy import ANSWER, DISCLAIMER, ESCALATE  # noqa: E402

try:
    import gradio as gr
except ImportError as e:  # the `ui` extra
    raise MedtuneError("the web UI needs Gradio: pip install 'medtune[ui]'") from e

EXAMPLES = [
    "What are the early signs of type 2 diabetes?",
    "How is high blood pressure usually treated?",
    "What are common side effects of ibuprofen?",
    "What does a low ferritin level mean?",
]
TITLES = {"emergency": "⚠ Emergency", "self_harm": "⚠ Crisis support"}
NOTICE = (
    "**medtune is for education and research. It is not a medical device**: it cannot examine you, and small "
    "models are often confidently wrong. Do not use it to diagnose, treat or choose doses. "
    "**In an emergency call your local emergency number** (911 in the US, 112 in the EU, 999 in the UK). "
    f"{DISCLAIMER}"
)
CSS = """
#medtune-disclaimer { border-left: 4px solid #d97706; padding: 0.5em 1em; background: rgba(217,119,6,0.08); }
.medtune-escalate { border: 3px solid #dc2626; border-radius: 8px; padding: 0.6em 0.9em; }
.medtune-escalate .medtune-title { color: #dc2626; font-weight: 700; }
.medtune-refuse { border: 2px solid #d97706; border-radius: 8px; padding: 0.6em 0.9em; }
.medtune-refuse .medtune-title { color: #b45309; font-weight: 700; }
"""
Message = dict[str, Any]


def guarded_html(action: str, category: str, text: str) -> str:
    """A fixed escalation or refusal as a boxed message with a title, so it cannot pass for an answer."""
    kind = "escalate" if action == ESCALATE else "refuse"
    title = TITLES.get(category, "⚠ Urgent") if action == ESCALATE else "Declined: " + category.replace("_", " ")
    return (f'<div class="medtune-{kind}"><p class="medtune-title">{html.escape(title, quote=False)}</p>'
            f'<p>{html.escape(text, quote=False)}</p></div>')


def respond(assistant: Assistant, message: str, shown: list[Message], convo: list[Message],
            temperature: float, max_tokens: float) -> Iterator[tuple[list[Message], list[Message], str]]:
    """One turn for the page: yields (what the chat shows, the conversation for the model, the textbox)."""
    text = (message or "").strip()
    if not text:
        yield shown, convo, message
        return
    asked = convo + [{"role": "user", "content": message}]
    params = GenParams(temperature=float(temperature), top_p=assistant.defaults.top_p,
                       repetition_penalty=assistant.defaults.repetition_penalty, max_tokens=int(max_tokens))
    yield shown + [{"role": "user", "content": message}], convo, ""  # show the question at once
    turn, answer, before = None, "", shown
    try:
        turn = assistant.start(asked, params)
        v = turn.verdict
        shown = shown + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        for piece in turn:
            answer += piece
            body = answer if v.action == ANSWER else guarded_html(v.action, v.category, answer)
            shown = shown[:-1] + [{"role": "assistant", "content": body}]
            yield shown, convo, ""
    except MedtuneError as e:  # e.g. a message too long for the context: one line, the chat goes on
        gr.Warning(str(e))
        if not answer:
            yield before, convo, message  # nothing was answered: the question goes back to the box
            return
    finally:
        if turn is not None:
            turn.close()  # a Stop click or a closed page ends generation too
    reply = turn.reply if turn is not None else None
    if reply is not None and reply.finish_reason == "length":  # shown, never sent back to the model
        note = f"\n\n*(cut at {reply.completion_tokens} tokens: raise Max new tokens in Settings)*"
        shown = shown[:-1] + [{"role": "assistant", "content": shown[-1]["content"] + note}]
    yield shown, asked + [{"role": "assistant", "content": answer}], ""


def build_ui(assistant: Assistant) -> gr.Blocks:
    """The chat page for one Assistant (launch it with `launch_ui`, which adds the page's CSS)."""
    d = assistant.defaults
    with gr.Blocks(title="medtune chat", fill_height=True) as demo:
        gr.Markdown(f"## medtune chat\nmodel `{assistant.model_id}` on {assistant.engine.name}")
        gr.Markdown(NOTICE, elem_id="medtune-disclaimer")
        chat = gr.Chatbot(elem_id="medtune-chat", label="Conversation", height=460, feedback_options=None,
                          placeholder="Ask a general health question.")
        convo = gr.State([])
        with gr.Row():
            box = gr.Textbox(elem_id="medtune-question", show_label=False, scale=5, lines=1, max_lines=6,
                             placeholder="Type a question and press Enter or Send", autofocus=True)
            send = gr.Button("Send", elem_id="medtune-send", variant="primary", scale=1)
        with gr.Row():
            stop = gr.Button("Stop", elem_id="medtune-stop", size="sm")
            reset = gr.Button("New conversation", elem_id="medtune-reset", size="sm")
        with gr.Accordion("Settings", open=False, elem_id="medtune-settings"):
            temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="Temperature (0 = greedy)",
                                    elem_id="medtune-temperature")
            max_tokens = gr.Slider(16, 2048, value=d.max_tokens, step=16, label="Max new tokens",
                                   elem_id="medtune-max-tokens")
        gr.Examples(EXAMPLES, inputs=[box], label="Example questions", elem_id="medtune-examples")

        def turn(message: str, shown: list[Message], history: list[Message], temp: float,
                 limit: float) -> Iterator[tuple[list[Message], list[Message], str]]:
            yield from respond(assistant, message, shown, history, temp, limit)

        io: dict[str, Any] = {"fn": turn, "inputs": [box, chat, convo, temperature, max_tokens],
                              "outputs": [chat, convo, box], "concurrency_limit": 1,
                              "concurrency_id": "medtune-engine"}  # one engine: one answer at a time
        events = [send.click(**io, api_name="chat"), box.submit(**io, api_name=False)]
        stop.click(None, cancels=events)
        reset.click(lambda: ([], [], ""), outputs=[chat, convo, box], cancels=events, api_name=False)
    return demo


def launch_ui(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
              block: bool = True) -> tuple[Any, str]:
    """Serve the page (no server-side rendering, no analytics); returns (the app, its local URL).
    `block=False` returns at once, leaving the server running in a thread (tests, notebooks)."""
    try:
        app, url, _ = demo.launch(server_name=host, server_port=port, share=share, css=CSS, ssr_mode=False,
                                  footer_links=[], prevent_thread_lock=not block, quiet=not block)
    except OSError as e:
        raise MedtuneError(f"--port {port}: cannot listen on {host}:{port} ({e})") from e
    return app, url
