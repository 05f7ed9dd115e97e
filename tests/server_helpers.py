"""A real uvicorn server on 127.0.0.1 in a background thread, for the server tests."""
import socket
import threading
import time
from contextlib import contextmanager

REPO_CIF = "examples/data/Ba3ZnRu2O9.cif"

NACL_PARTIAL = """data_partial
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 0.5
K1 K 0 0 0 0.5
Cl1 Cl 0.5 0.5 0.5 1
"""

EUO = """data_EuO
_cell_length_a 3.63
_cell_length_b 3.63
_cell_length_c 3.63
_cell_angle_alpha 60
_cell_angle_beta 60
_cell_angle_gamma 60
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Eu1 Eu 0 0 0
O1 O 0.5 0.5 0.5
"""


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
