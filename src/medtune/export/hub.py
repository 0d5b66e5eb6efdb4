"""Push an export folder to the Hugging Face hub as one commit (huggingface_hub's upload_folder).

One commit means a failed or interrupted upload leaves no half-uploaded files on the hub: files are sent
first and become visible only when the commit is created (the repo itself is created first, and may be
left empty). The token comes from the usual places
(HF_TOKEN, or the cached `hf auth login`). `dry_run` lists what would be uploaded without any network.
"""

from __future__ import annotations

from pathlib import Path

from medtune.errors import MedtuneError


def upload_plan(folder: Path) -> list[tuple[str, int]]:
    """(path inside the repo, size in bytes) of every file that would be uploaded."""
    return [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


def check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise MedtuneError(f"--push-to-hub {repo_id}: expected a repo id OWNER/NAME")


def push(folder: Path, repo_id: str, *, private: bool = False, dry_run: bool = False) -> list[tuple[str, int]]:
    """Upload `folder` to the model repo `repo_id` (created when missing); returns the files sent."""
    plan = upload_plan(folder)
    check_repo_id(repo_id)
    if dry_run:
        return plan
    try:
        from huggingface_hub import HfApi, constants, get_token
    except ImportError:
        raise MedtuneError("--push-to-hub needs huggingface_hub: pip install 'medtune[hub]'") from None
    if constants.HF_HUB_OFFLINE:
        raise MedtuneError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set; nothing uploaded (--dry-run lists "
                           "the files)")
    token = get_token()
    if not token:
        raise MedtuneError(f"--push-to-hub {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); "
                           "nothing uploaded")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"medtune export {folder.name}")
    except Exception as e:  # network, auth and HTTP errors all end here: one line, nothing committed
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise MedtuneError(f"--push-to-hub {repo_id}: upload failed, nothing committed ({first})") from None
    return plan
