"""``hfrnn data``: dispatch, Hydra validation before work, default names, overwrite rule."""
from __future__ import annotations

import h5py
import pytest

try:
    from fixtures_data import make_fsdd, make_midi_folder
except ImportError:
    from tests.fixtures_data import make_fsdd, make_midi_folder

from hfrnn.data_cli import main

SMALL_BB = ["n_train=6", "n_valid=2", "n_test=3", "length=5"]


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_unknown_kind_and_usage(capsys):
    assert main(["weather"]) == 2
    err = capsys.readouterr().err.strip()
    assert "weather" in err and "bouncing_balls, midi, speech" in err and "\n" not in err
    assert main([]) == 2
    assert main(["--help"]) == 0


@pytest.mark.parametrize("bad", [["n_trian=5"], ["n_train=many"], ["+colour=red"], ["radius"]])
def test_bad_overrides_fail_before_work(tmp_path, capsys, bad):
    assert main(["bouncing_balls", *bad]) == 2
    assert "hfrnn data bouncing_balls" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_bad_values_fail_before_work(tmp_path, capsys):
    src = make_midi_folder(tmp_path / "tunes")
    assert main(["midi", f"source={src}", "pitches=100"]) == 1
    assert main(["midi", f"source={src}", "framing=bars"]) == 2
    assert main(["midi", "source=nowhere"]) == 1
    assert main(["midi"]) == 1
    assert "source" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_bouncing_balls_overwrite_rule(tmp_path, capsys):
    assert main(["bouncing_balls", *SMALL_BB]) == 0
    out = tmp_path / "data" / "bouncing_balls.h5"
    first = out.read_bytes()
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "bouncing_balls" and f["params"].attrs["n_train"] == 6
        assert f["train/data"].shape == (30, 225)
    assert main(["bouncing_balls", *SMALL_BB, "seed=1"]) == 1
    assert "overwrite=true" in capsys.readouterr().err and out.read_bytes() == first
    assert main(["bouncing_balls", *SMALL_BB, "overwrite=true"]) == 0
    assert out.read_bytes() == first  # same inputs, same bytes
    assert main(["bouncing_balls", *SMALL_BB, "seed=1", "overwrite=true"]) == 0
    assert out.read_bytes() != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["bouncing_balls.h5"]


def test_midi_and_speech(tmp_path):
    src = make_midi_folder(tmp_path / "My Tunes")
    assert main(["midi", f"source={src}", "pitches=88", "frame_s=0.1"]) == 0
    with h5py.File(tmp_path / "data" / "my_tunes.h5") as f:
        assert f.attrs["dim"] == 88 and f["params"].attrs["frame_s"] == 0.1
        assert len(f["inputs/sha256"]) == 6
    (src / "test" / "broken.mid").write_bytes(b"MThd")
    assert main(["midi", f"source={src}", "out=x/y.h5"]) == 1
    assert not (tmp_path / "x" / "y.h5").exists()
    fsdd = make_fsdd(tmp_path / "fsdd", speakers=("a",), digits=1)
    assert main(["speech", f"source={fsdd}", "mode=clips", "out=s.h5"]) == 0
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["params"].attrs["mode"] == "clips" and f["extra/norm_std"].shape == (39,)
