"""A GET for the tests that talk to a process's ops endpoints: the status and body, whatever it is."""

import urllib.error
import urllib.request


def get(port: int, path: str, timeout: float = 2) -> tuple[int, str]:
    """(status, body) of http://127.0.0.1:PORT/PATH; (0, "") while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
