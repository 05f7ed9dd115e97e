"""Batch prediction: chunks through one network call, in-process or on dask workers."""
import numpy as np
import pytest

from insnet_core import InsnetError
from insnet_core.batch import predict_batch, predict_chunk


@pytest.fixture(scope="module")
def cells(tmp_path_factory, known):
    """Three copies of a known crystal (one strained), a junk file between them."""
    folder = tmp_path_factory.mktemp("batch")
    lines = known.read_text().splitlines()
    strained = lines[:1] + ["1.03"] + lines[2:]
    files = [folder / "POSCAR-a", folder / "POSCAR-junk", folder / "POSCAR-b",
             folder / "POSCAR-c"]
    files[0].write_text(known.read_text())
    files[1].write_text("junk\n")
    files[2].write_text("\n".join(strained) + "\n")
    files[3].write_text(known.read_text())
    return files


def _options(model, instrument="VISION"):
    return {"method": "ML", "model": str(model), "instrument": instrument}


def test_a_chunk_equals_one_by_one_and_a_bad_file_fails_alone(tiny_model, cells):
    from insnet_core.predict import predict
    out = predict_chunk(cells, _options(tiny_model))
    assert [f for f, _, _ in out] == [str(f) for f in cells]      # the order given
    bad = out[1]
    assert bad[1] is None and "POSCAR-junk" in bad[2]
    for f, result, error in (out[0], out[2], out[3]):
        assert error is None
        alone = predict(f, method="ML", model=str(tiny_model))
        np.testing.assert_allclose(result.total.values, alone.total.values, rtol=1e-5,
                                   atol=1e-12 * alone.total.values.max())
        assert result.total.metadata["structure_file"] == str(f)
    # the strained copy is a different crystal: a different spectrum
    assert not np.allclose(out[0][1].total.values, out[2][1].total.values)


def test_dask_workers_give_the_in_process_results(tiny_model, cells):
    pytest.importorskip("dask.distributed")
    serial = {f: r for chunk in predict_batch(cells, _options(tiny_model), chunk_size=2)
              for f, r, _ in chunk}
    chunks = list(predict_batch(cells, _options(tiny_model), workers=2, chunk_size=2))
    assert sorted(len(c) for c in chunks) == [2, 2]
    got = {f: (r, e) for chunk in chunks for f, r, e in chunk}
    assert set(got) == {str(f) for f in cells}
    assert got[str(cells[1])][0] is None and "POSCAR-junk" in got[str(cells[1])][1]
    for f in (cells[0], cells[2], cells[3]):
        np.testing.assert_allclose(got[str(f)][0].total.values, serial[str(f)].total.values,
                                   rtol=1e-5)


@pytest.mark.parametrize("kwargs, words", [({"chunk_size": 0}, "chunk size"),
                                           ({"workers": -1}, "workers")])
def test_bad_batch_settings_are_named(tiny_model, cells, kwargs, words):
    with pytest.raises(InsnetError, match=words):
        list(predict_batch(cells, _options(tiny_model), **kwargs))


def test_cli_batch_writes_each_file_and_names_the_bad_one(tiny_model, cells, tmp_path, capsys):
    from insnet_core.cli import main
    folder = cells[0].parent
    rc = main(["predict", str(folder), "--model", str(tiny_model), "-o", str(tmp_path / "out"),
               "--chunk-size", "3"])
    captured = capsys.readouterr()
    assert rc == 1 and "1 of 4 structures failed" in captured.err
    assert "POSCAR-junk" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "POSCAR-a.nxs", "POSCAR-b.nxs", "POSCAR-c.nxs"]
