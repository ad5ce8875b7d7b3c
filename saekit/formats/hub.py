"""`hf:ORG/REPO[/PATH][@REVISION]`: an SAE on the Hugging Face hub, resolved to a path in the HF cache.

`saekit.load("hf:...")` downloads only what the spec names (into the normal HF cache, through
`huggingface_hub`) and then reads the local copy exactly as a local path: the format is detected from
the files, so every format `saekit.load` reads works from the hub (a SAELens release's sub-folder, one of
sparsify's per-hookpoint folders, a dictionary_learning `trainer_N/`, re-n-y's repos, gytdau's `.pth`
files, saev's `sae.pt`). What is fetched:
- no PATH: the whole repo;
- PATH a folder: everything under it;
- PATH a `.safetensors` / `.json` file: its folder (a reader treats such a file as its folder);
- PATH another weights file (`.pt`, `.pth`, `.bin`, `.ckpt`): the file and the JSON files of its folder
  (the configs a reader looks for beside it).
`@REVISION` is a branch, tag or commit hash (default: main); an `@` always starts the revision, so a PATH
containing `@` needs an explicit one (`hf:org/repo/ae@1000@main`).

With `HF_HUB_OFFLINE=1` nothing is downloaded: the cache is read, and anything missing is named (repo,
path, revision) with the command that fetches it when online. `HF_HUB_OFFLINE` and `HF_HUB_CACHE` are
read when a spec is resolved (not only when huggingface_hub was imported).

Models are named the same way (`--model hf:ORG/REPO`, `hub_model_name`): transformers and diffusers
resolve hub ids themselves, so there the prefix is only stripped (and the offline cache checked).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from saekit.errors import ModelLoadError, SAEFormatError, SaekitError

PREFIX = "hf:"
#: weights files fetched with their folder's JSON configs; `.safetensors`/`.json` mean their folder
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
FOLDER_FILE_SUFFIXES = (".safetensors", ".json")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class HFSpec:
    """A parsed `hf:ORG/REPO[/PATH][@REVISION]`."""

    repo_id: str
    """`ORG/REPO` on the hub (a model repo)."""
    path: str = ""
    """A folder or file inside the repo, `/`-separated; "" = the whole repo."""
    revision: str | None = None
    """Branch, tag or commit hash; None = the repo's default branch (`main`)."""

    def __str__(self) -> str:
        path = f"/{self.path}" if self.path else ""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{PREFIX}{self.repo_id}{path}{rev}"

    @property
    def names_file(self) -> bool:
        return PurePosixPath(self.path).suffix.lower() in FILE_SUFFIXES + FOLDER_FILE_SUFFIXES

    def allow_patterns(self) -> list[str] | None:
        """The `snapshot_download` patterns fetching what the spec names and nothing else (None: all)."""
        if not self.path:
            return None
        path = PurePosixPath(self.path)
        if not self.names_file:
            return [f"{_escape(self.path)}/*"]
        folder = "" if str(path.parent) == "." else f"{_escape(str(path.parent))}/"
        if path.suffix.lower() in FOLDER_FILE_SUFFIXES:
            return [f"{folder}*"] if folder else None
        return [_escape(self.path), f"{folder}*.json"]

    def fetch_command(self) -> str:
        """The shell command that puts this spec's files into the HF cache."""
        cmd = f"hf download {self.repo_id}"
        for pattern in self.allow_patterns() or []:
            cmd += f" --include '{pattern}'"
        return cmd + (f" --revision {self.revision}" if self.revision else "")


def _escape(path: str) -> str:
    """A repo path as an fnmatch pattern matching only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def is_hf_spec(name: object) -> bool:
    """True for `hf:...` names (str or Path); they always mean the hub, never a local folder."""
    return isinstance(name, (str, os.PathLike)) and os.fspath(name).startswith(PREFIX)


def parse_hf_spec(text: str | os.PathLike, error: type[SaekitError] = SAEFormatError) -> HFSpec:
    """`hf:ORG/REPO[/PATH][@REVISION]` -> HFSpec (pure: no file or network access); `error` on a
    malformed spec, saying what the grammar is."""
    raw = os.fspath(text)

    def bad(why: str) -> SaekitError:
        return error(
            f"{raw!r} is not a hub spec ({why}): write hf:ORG/REPO[/PATH][@REVISION], e.g. "
            "hf:gytdau/clip-sae-128/sparse_autoencoder_128.pth or hf:ORG/REPO/layers.6@v1.0"
        )

    if not raw.startswith(PREFIX):
        raise bad(f"it does not start with {PREFIX}")
    body, at, revision = raw[len(PREFIX) :].rpartition("@")
    if not at:
        body, revision = revision, ""
    elif not revision or any(c.isspace() for c in revision):
        raise bad("the revision after @ is empty or has spaces")
    parts = body.strip("/").split("/")
    if len(parts) < 2:
        raise bad("it names no ORG/REPO")
    if not all(_NAME.fullmatch(p) for p in parts[:2]):
        raise bad("ORG and REPO are letters, digits, '.', '_' or '-'")
    if any(p in ("", ".", "..") for p in parts[2:]):
        raise bad("the path inside the repo has an empty, '.' or '..' part")
    return HFSpec("/".join(parts[:2]), "/".join(parts[2:]), revision or None)


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set now, or huggingface_hub's own offline switch."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if env.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.is_offline_mode())


def _hub():
    try:
        import huggingface_hub
    except ImportError as exc:
        raise SAEFormatError(
            f"hf: specs need the huggingface_hub package ({exc}): pip install huggingface_hub"
        ) from None
    return huggingface_hub


def _cache_dir() -> str | None:
    """HF_HUB_CACHE as set now (None: huggingface_hub's default, from HF_HOME)."""
    return os.environ.get("HF_HUB_CACHE") or None


def _cache_shown() -> str:
    if _cache_dir():
        return _cache_dir() or ""
    try:
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    except ImportError:
        return "the Hugging Face cache"


def _missing(spec: HFSpec, what: str, local_only: bool) -> SAEFormatError:
    where = f"revision {spec.revision or 'main'}"
    sub = f", path {spec.path!r}" if spec.path else ""
    if local_only:
        fix = (
            f"HF_HUB_OFFLINE is set: nothing is downloaded. Fetch it while online with "
            f"`{spec.fetch_command()}` (or unset HF_HUB_OFFLINE); then it loads offline from the cache"
        )
    else:
        fix = f"The hub could not be reached: check the connection, or fetch it with `{spec.fetch_command()}`"
    cache = _cache_shown()
    return SAEFormatError(f"{spec}: {what} (repo {spec.repo_id}{sub}, {where}; cache {cache}). {fix}")


def _listing(hub, spec: HFSpec) -> list[str] | None:
    """The repo's top-level names, when the hub answers (to say what a wrong PATH could have been)."""
    try:
        files = hub.list_repo_files(spec.repo_id, revision=spec.revision)
    except Exception:  # best effort: any failure only loses the hint
        return None
    return sorted({f.split("/")[0] for f in files})


def resolve_hf(spec: str | os.PathLike | HFSpec) -> Path:
    """Download (or, offline, find in the cache) what an `hf:` spec names; the local file or folder."""
    spec = spec if isinstance(spec, HFSpec) else parse_hf_spec(spec)
    hub = _hub()
    from huggingface_hub import errors

    local_only = offline()
    try:
        folder = hub.snapshot_download(
            spec.repo_id,
            revision=spec.revision,
            allow_patterns=spec.allow_patterns(),
            cache_dir=_cache_dir(),
            local_files_only=local_only,
        )
    except errors.RevisionNotFoundError as exc:
        raise SAEFormatError(
            f"{spec}: the repo {spec.repo_id} has no revision {spec.revision!r} ({exc}); name a branch, tag "
            "or commit hash it has"
        ) from None
    except errors.RepositoryNotFoundError as exc:
        raise SAEFormatError(
            f"{spec}: no repo {spec.repo_id} on the hub, or it is private or gated ({exc}); check the name, "
            "or log in with `hf auth login` and accept its licence"
        ) from None
    except errors.LocalEntryNotFoundError:
        raise _missing(spec, "no snapshot of it is in the local cache", local_only) from None
    except (OSError, ValueError) as exc:
        raise SAEFormatError(f"{spec}: downloading from the hub failed: {exc}") from None
    local = Path(folder) / spec.path if spec.path else Path(folder)
    if not local.exists():
        names = None if local_only else _listing(hub, spec)
        if names is not None:
            raise SAEFormatError(
                f"{spec}: the repo {spec.repo_id} at revision {spec.revision or 'main'} has no "
                f"{spec.path!r}; it holds {names[:30]}"
            )
        commit = Path(folder).name
        raise _missing(spec, f"the cached snapshot (commit {commit}) lacks {spec.path!r}", local_only)
    return local


def hub_model_name(name: str) -> str:
    """`hf:ORG/REPO` -> `ORG/REPO` (any other name unchanged) for transformers / diffusers, which resolve
    hub ids themselves. Offline, a repo missing from the cache is a ModelLoadError naming the command that
    fetches it; a PATH or @REVISION is refused (download that snapshot and pass its folder)."""
    if not is_hf_spec(name):
        return name
    spec = parse_hf_spec(name, error=ModelLoadError)
    if spec.path or spec.revision:
        raise ModelLoadError(
            f"--model {name}: models are named hf:ORG/REPO without a path or @revision; for another "
            f"revision or a sub-folder run `hf download {spec.repo_id}"
            f"{f' --revision {spec.revision}' if spec.revision else ''} --local-dir DIR` and pass "
            f"DIR{'/' + spec.path if spec.path else ''}"
        )
    if offline():
        try:
            _hub().snapshot_download(spec.repo_id, cache_dir=_cache_dir(), local_files_only=True)
        except (OSError, ValueError):
            raise ModelLoadError(
                f"--model {name}: no snapshot of {spec.repo_id} (revision main) is in the local cache "
                f"({_cache_shown()}) and HF_HUB_OFFLINE is set: nothing is downloaded. Fetch it while "
                f"online with `hf download {spec.repo_id}` (or unset HF_HUB_OFFLINE)"
            ) from None
    return spec.repo_id
