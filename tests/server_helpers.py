"""A real uvicorn server on 127.0.0.1 in a background thread, for the server tests."""
import socket
import threading
import time
from contextlib import contextmanager

from structures import EUO, NACL_PARTIAL  # noqa: F401  (the server tests' bad inputs)

REPO_CIF = "examples/data/Ba3ZnRu2O9.cif"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app, port=None):
    """Serve ``app`` with uvicorn until the block ends; yields the base URL."""
    import uvicorn
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def server_temp_dirs():
    """The service's per-request temporary folders that exist now."""
    import tempfile
    from pathlib import Path
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("insnet-serve-*"))
