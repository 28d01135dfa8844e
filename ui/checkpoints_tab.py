"""The Checkpoints tab: the local Hugging Face cache (load with one click, delete with confirmation) and saving
the loaded checkpoint as another variant. Local use only: a public server does not build it."""

from __future__ import annotations

import datetime

import gradio as gr
import huggingface_hub
import pandas as pd

from core.checkpoint_tools import SAVE_DTYPES
from core.checkpoints import hub_offline
from ui.common import GPU_QUEUE, AppContext, change_shared, fmt_bytes, user_errors
from ui.model_panel import ModelPanel

COLUMNS = ["checkpoint", "kind", "variants", "size", "last used"]


def cache_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "checkpoint": r["id"],
                "kind": r["kind"],
                "variants": ", ".join(r["variants"]),
                "size": fmt_bytes(r["bytes"]),
                "last used": datetime.datetime.fromtimestamp(r["last_used"]).strftime("%Y-%m-%d %H:%M"),
            }
            for r in rows
        ],
        columns=COLUMNS,
    )


def build_checkpoints_tab(ctx: AppContext, panel: ModelPanel, tab: gr.Tab) -> None:
    studio = ctx.studio
    offline = hub_offline(ctx.settings.offline)
    gr.Markdown(
        f"### In the local Hugging Face cache\n`{huggingface_hub.constants.HF_HUB_CACHE}`"
        + (" · **offline**: only these can be loaded" if offline else "")
    )
    table = gr.Dataframe(cache_table([]), interactive=False, elem_id="cache-table")
    with gr.Row(equal_height=True):
        chosen = gr.Dropdown([], label="Cached checkpoint", allow_custom_value=True, scale=3, elem_id="cache-choice")
        refresh_button = gr.Button("Refresh", scale=1)
        load_button = gr.Button("Load", variant="primary", scale=1, elem_id="cache-load")
        delete_button = gr.Button("Delete…", variant="stop", scale=1, elem_id="cache-delete")
    with gr.Row(visible=False, elem_id="cache-confirm") as confirm_row:
        confirm_text = gr.Markdown()
        confirm_button = gr.Button("Yes, delete it", variant="stop", elem_id="cache-confirm-delete")
        cancel_button = gr.Button("Cancel")
    deleted = gr.JSON(visible=False)
    rows_state = gr.JSON(visible=False)  # the last listing, for the table, the picker and the confirmation

    @user_errors
    def list_cache() -> list[dict]:
        """The model repos in the local Hugging Face cache, with sizes and variants."""
        return studio.cached_checkpoints()

    def show(rows: list[dict], current: str | None) -> tuple:
        ids = [r["id"] for r in rows]
        return cache_table(rows), gr.update(choices=ids, value=current if current in ids else None)

    def ask(repo_id: str | None, rows: list[dict]) -> tuple:
        if not repo_id:
            raise gr.Error("Pick a cached checkpoint first.", print_exception=False)
        size = next((fmt_bytes(r["bytes"]) for r in rows or [] if r["id"] == repo_id), "?")
        return gr.update(visible=True), f"Delete **{repo_id}** ({size}) from the cache? This can't be undone."

    @user_errors
    def delete_cached(repo_id: str, request: gr.Request = None) -> dict:
        """Delete a checkpoint from the local cache (not one that is loaded now)."""
        # On the worker: "is it loaded?" and the deletion happen with no load in between.
        return change_shared(ctx, request, "Deleting a cached checkpoint", studio.delete_cached, repo_id or "")

    @user_errors
    def load_cached(repo_id: str, variant: str, dtype: str, request: gr.Request = None, progress=gr.Progress()) -> dict:
        if not repo_id:
            raise gr.Error("Pick a cached checkpoint first.", print_exception=False)
        return panel.load_model(repo_id, variant, dtype, request, progress)

    listed = dict(fn=show, inputs=[rows_state, chosen], outputs=[table, chosen], api_visibility="private")
    refresh_button.click(list_cache, None, rows_state, api_name="cached_checkpoints").then(**listed)
    tab.select(list_cache, None, rows_state, api_visibility="private").then(**listed)
    # Queued (with no limit): Gradio shows the error of a queued event as a toast; a non-queued one's was lost.
    delete_button.click(
        ask, [chosen, rows_state], [confirm_row, confirm_text], api_visibility="private", concurrency_limit=None
    )
    cancel_button.click(lambda: gr.update(visible=False), None, confirm_row, api_visibility="private", queue=False)
    confirm_button.click(delete_cached, chosen, deleted, api_name="delete_cached", concurrency_id=GPU_QUEUE).then(
        lambda: gr.update(visible=False), None, confirm_row, api_visibility="private"
    ).then(list_cache, None, rows_state, api_visibility="private").then(**listed)
    panel.wire_load(load_button.click, load_cached, [chosen, panel.variant, panel.dtype])

    gr.Markdown(
        "### Save the loaded checkpoint as a variant\nWrites `name.<variant>.safetensors` beside each component's "
        "files (seed: *Checkpoint variants*), e.g. an `fp16` copy that loads with half the reading. Leave the folder "
        "empty to write into the checkpoint's own folder; another folder gets the configs copied too."
    )
    with gr.Row(equal_height=True):
        folder = gr.Textbox(label="Folder", placeholder="empty: the loaded checkpoint's own folder", scale=3)
        variant_name = gr.Textbox("fp16", label="Variant name", scale=1)
        save_dtype = gr.Dropdown(list(SAVE_DTYPES), value="float16", label="dtype", scale=1)
        save_button = gr.Button("Save variant", scale=1, elem_id="save-variant")
    saved = gr.JSON(visible=False)
    saved_text = gr.Markdown(elem_id="saved-variant")
    load_saved = gr.Button("Load the saved variant", visible=False, elem_id="load-saved")

    @user_errors
    def save_variant(
        folder: str, variant: str, dtype: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)
    ) -> dict:
        """Save the loaded checkpoint's weights as `variant` files in `dtype` into `folder` (empty: its own)."""
        progress(0, desc="Saving…")
        return change_shared(ctx, request, "Saving a variant", studio.save_variant, folder or "", variant, dtype)

    def saved_markdown(result: dict) -> tuple:
        text = (
            f"Saved **{result['variant']}** ({result['dtype']}, {fmt_bytes(result['bytes'])}, "
            f"{len(result['files'])} files) into `{result['folder']}`."
        )
        return "\n\n".join([text, *result["notes"]]), gr.update(visible=True)

    save_button.click(
        save_variant, [folder, variant_name, save_dtype], saved, api_name="save_variant", concurrency_id=GPU_QUEUE
    ).success(saved_markdown, saved, [saved_text, load_saved], api_visibility="private")

    @user_errors
    def load_saved_variant(result: dict, dtype: str, progress=gr.Progress()) -> dict:
        return panel.load_model(result["folder"], result["variant"], dtype, progress)

    panel.wire_load(load_saved.click, load_saved_variant, [saved, panel.dtype])
