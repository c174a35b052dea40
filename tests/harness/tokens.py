"""Python `tiktoken` with no network: the token-accounting tests' reference tokenizer.

tiktoken downloads its rank files on first use; this machine has no internet. tiktoken-rs ships
the same files (same SHA-256 as tiktoken's expected hashes) in its crate source, so a cache dir
named the way tiktoken/load.py names it (sha1 of the blob URL) is built from them.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
ENCODINGS = ("cl100k_base", "o200k_base")


def _assets() -> Path:
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(glob.glob(str(home / "registry" / "src" / "*" / "tiktoken-rs-0.12*" / "assets")))
    if not found:
        raise RuntimeError("tiktoken-rs sources not found: run `cargo fetch` first")
    return Path(found[-1])


@functools.cache
def encoding(name: str):
    """A tiktoken Encoding loaded from the tiktoken-rs rank files."""
    cache = Path(tempfile.gettempdir()) / "aimesh-tiktoken-cache"
    cache.mkdir(exist_ok=True)
    for enc in ENCODINGS:
        dst = cache / hashlib.sha1(BLOB.format(enc).encode()).hexdigest()
        if not dst.exists():
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(_assets() / f"{enc}.tiktoken", tmp)
            tmp.replace(dst)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    return tiktoken.get_encoding(name)


def count(name: str, text: str) -> int:
    return len(encoding(name).encode_ordinary(text))


def chat_prompt_tokens(name: str, messages: list[dict]) -> int:
    """OpenAI's counting rule for chat prompts: 3 per message, 1 per name, 3 for the reply."""
    n = 3
    for m in messages:
        n += 3
        for k, v in m.items():
            n += count(name, v)
            if k == "name":
                n += 1
    return n
