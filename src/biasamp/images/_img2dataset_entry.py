"""Run img2dataset's `download()` in its own process: `python -m biasamp.images._img2dataset_entry CONFIG.json`.

img2dataset starts its workers with "spawn", which re-imports the main module: running it
from this guarded module (never from the caller's process) keeps that safe. Module-level
code below also runs in every spawned worker (they import this module as `__mp_main__`);
it caps each try of one URL at `BIASAMP_FETCH_DEADLINE` seconds, since
img2dataset's `timeout` bounds each socket operation only (a server that trickles bytes
would otherwise hold a thread indefinitely).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_CHUNK = 1 << 16


def _install_deadline() -> None:
    deadline_s = float(os.environ.get("BIASAMP_FETCH_DEADLINE", "0") or 0)
    max_bytes = int(os.environ.get("BIASAMP_FETCH_MAX_BYTES", "0") or 0)
    if deadline_s <= 0 and max_bytes <= 0:
        return
    try:
        import img2dataset.downloader as dl
    except Exception:  # noqa: BLE001 - without img2dataset the caller reports the failure
        return
    if not hasattr(dl, "download_image") or not hasattr(dl, "is_disallowed"):
        return
    import io
    import urllib.request

    def download_image(row, timeout, user_agent_token, disallowed_header_directives):
        key, url = row
        start = time.monotonic()
        ua = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"
        if user_agent_token:
            ua += f" (compatible; {user_agent_token}; +https://github.com/rom1504/img2dataset)"
        try:
            request = urllib.request.Request(url, data=None, headers={"User-Agent": ua})
            with urllib.request.urlopen(request, timeout=timeout) as r:
                if disallowed_header_directives and dl.is_disallowed(
                    r.headers, user_agent_token, disallowed_header_directives
                ):
                    return key, None, "Use of image disallowed by X-Robots-Tag directive"
                buf = io.BytesIO()
                read = getattr(r, "read1", r.read)
                while True:
                    chunk = read(_CHUNK)  # whatever has arrived: the deadline is checked often
                    if not chunk:
                        break
                    buf.write(chunk)
                    if deadline_s > 0 and time.monotonic() - start > deadline_s:
                        return key, None, f"timed out: the download took longer than {deadline_s:g} s"
                    if max_bytes > 0 and buf.tell() > max_bytes:
                        return key, None, f"payload larger than {max_bytes} bytes"
            buf.seek(0)
            return key, buf, None
        except Exception as err:  # noqa: BLE001 - recorded per URL, as img2dataset does
            return key, None, str(err)

    dl.download_image = download_image


_install_deadline()


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as f:
        config = json.load(f)
    from img2dataset import download

    download(**config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
