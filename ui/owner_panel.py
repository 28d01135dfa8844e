"""The owner's login on a public server (`--admin USER:PASS`): after it, this browser session may change what every
visitor shares (checkpoint, VAE, memory modes, adapters). Wrong passwords are throttled."""

from __future__ import annotations

import gradio as gr

from core.access import LockedOut
from ui.common import AppContext, session_of, user_errors


def build_owner_panel(ctx: AppContext) -> None:
    """`/admin_login(user, password)`; shown only in public mode with an owner login configured."""
    with gr.Accordion("Owner", open=False, elem_id="owner-panel"):
        gr.Markdown("The server's owner logs in here to change the model, VAE, memory modes and adapters for everyone.")
        with gr.Row(equal_height=True):
            user = gr.Textbox(label="Owner name", scale=2, max_length=256)
            password = gr.Textbox(label="Password", type="password", scale=2, max_length=256)
            button = gr.Button("Log in", scale=1, elem_id="owner-login")
        status = gr.Markdown(elem_id="owner-status")

    @user_errors
    def admin_login(user: str, password: str, request: gr.Request = None) -> str:
        """Log this session in as the owner; five wrong tries lock the session and the name out for a minute."""
        try:
            ok = ctx.owners.login(session_of(request), str(user or ""), str(password or ""))
        except LockedOut as e:
            raise gr.Error(str(e), print_exception=False) from e
        if not ok:
            raise gr.Error("Wrong owner name or password.", print_exception=False)
        return "Logged in as the owner: this session may change the model, VAE, memory modes and adapters."

    button.click(admin_login, [user, password], status, api_name="admin_login", concurrency_limit=None)  # errors shown
