"""PNG plots of spectra."""
import numpy as np
import pytest

from insnet_core.plotting import default_title, make_figure, plot_spectrum
from insnet_core.spectrum import Spectrum

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _map(unit="meV"):
    e = np.linspace(-5.0, 80.0, 86)
    q = np.linspace(0.0, 8.0, 41)
    qc, ec = np.meshgrid(0.5 * (q[1:] + q[:-1]), 0.5 * (e[1:] + e[:-1]), indexing="ij")
    vals = np.exp(-((ec - 2.0 * qc ** 2) ** 2) / 10.0)
    vals[ec > 10.0 * qc] = np.nan  # outside the kinematic range
    return Spectrum(e, vals, q_edges=q, display_energy_unit=unit,
                    metadata={"formula": "Al", "instrument": "MARI", "temperature": 5.0,
                              "Ei": 100.0})


def _one_d(unit="meV"):
    e = np.linspace(0.0, 200.0, 201)
    c = 0.5 * (e[1:] + e[:-1])
    vals = np.vstack([np.exp(-(c - 50) ** 2 / 20), np.exp(-(c - 120) ** 2 / 50)])
    return Spectrum(e, vals, labels=["backward", "forward"], display_energy_unit=unit,
                    y_label="S(E) (barn/meV)")


@pytest.mark.parametrize("make", [_map, _one_d])
def test_png_written(tmp_path, make):
    path = plot_spectrum(make(), tmp_path / "s.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_map_figure_labels():
    fig = make_figure(_map())
    ax = fig.axes[0]
    assert "|Q|" in ax.get_xlabel() and "Å" in ax.get_xlabel()
    assert "Energy transfer" in ax.get_ylabel() and "meV" in ax.get_ylabel()
    colorbar = fig.axes[1]
    assert colorbar.get_ylabel() == "S(Q,E) (barn/sr/meV/cell)"
    assert ax.get_title() == "Al, MARI, T = 5 K, Ei = 100 meV"
    mesh = ax.collections[0]
    assert np.ma.getmaskarray(mesh.get_array()).any()  # NaN bins are blank


def test_cm1_labels_and_values():
    spec = _one_d("cm-1")
    fig = make_figure(spec, title="custom")
    ax = fig.axes[0]
    assert "cm$^{-1}$" in ax.get_xlabel()
    assert "cm$^{-1}$" in ax.get_ylabel() and "meV" not in ax.get_ylabel()
    assert ax.get_title() == "custom"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["backward", "forward"]
    line = ax.get_lines()[0]
    assert line.get_xdata()[-1] == pytest.approx(spec.energy_centres[-1] * 8.065544, rel=1e-6)
    fig_map = make_figure(_map("cm-1"))
    assert "cm$^{-1}$" in fig_map.axes[0].get_ylabel()


def test_default_title_without_metadata():
    assert default_title(_one_d()) == ""
    fig = make_figure(_one_d())
    assert fig.axes[0].get_title() == ""


def test_title_shows_instability_and_potential():
    spec = _one_d()
    spec.metadata.update({"formula": "NaCl", "unstable": 1, "min_phonon_energy_meV": -3.21,
                          "imaginary_at_gamma": 1, "potential": "chgnet"})
    title = default_title(spec)
    assert title.startswith("NaCl") and "uMLIP chgnet" in title
    assert "UNSTABLE: imaginary modes (at Gamma) down to -3.21 meV" in title
    spec.metadata.update({"unstable": "0"})
    assert "UNSTABLE" not in default_title(spec)
