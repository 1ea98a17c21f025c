"""A mistake on the command line is one line on stderr with a suggestion, exit status 2, no run."""
import re
import subprocess
import sys

import pytest

from hfrnn import __version__
from hfrnn.cli import CONFIG_DIR, _overrides, main
from hfrnn.config import ConfigError, check_overrides


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv, message", [
    (["hiden=50"], "unknown key 'hiden'; did you mean 'hidden'?"),
    (["+hiden=50"], "unknown key 'hiden'; did you mean 'hidden'?"),
    (["++hiden=50"], "unknown key 'hiden'; did you mean 'hidden'?"),
    (["optimizer.cg.max_itrs=3"], "unknown key 'optimizer.cg.max_itrs'; did you mean 'optimizer.cg.max_iters'?"),
    (["+budget.max_minibatchs=5"], "unknown key 'budget.max_minibatchs'; did you mean 'budget.max_minibatches'?"),
    (["optimizer=sgd", "optimizer.damping.initial=1"], "unknown key 'optimizer.damping'"),
    (["task=adition"], "unknown task 'adition'; did you mean 'addition'? choices: addition, "),
    (["-m", "task=addition,xorr"], "unknown task 'xorr'; did you mean 'xor'?"),
    (["model=lsmt"], "unknown model 'lsmt'; did you mean 'lstm'? choices: lstm, rnn"),
    (["optimizer=hf_nsd"], "unknown optimizer 'hf_nsd'; did you mean 'hf_nosd'? choices: adam, hf, hf_nosd, sgd"),
    (["experiment=table1_mid"], "unknown experiment 'table1_mid'; did you mean 'table1_midi'?"),
    (["arm=rnn_hff"], "unknown arm 'rnn_hff'; did you mean 'rnn_hf'? choices: lstm_adam, lstm_sgd, rnn_hf"),
    (["T=abc"], "T=abc"),
    (["arm=null"], "unknown arm 'null'; choices: lstm_adam, lstm_sgd, rnn_hf"),
])
def test_a_mistake_is_one_line_with_a_suggestion(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(capsys, ["train", *argv])
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("hfrnn train: error: ") and message in err, err
    assert not list(tmp_path.iterdir())  # no run directory


def test_choices_name_no_internal_schemas(capsys):
    rc, _, err = _run(capsys, ["train", "task=adition"])
    assert rc == 2 and "schema" not in err


# The launchers extra is installed with the tests (so that the local2 sweeps are tested); its
# absence is simulated in a fresh interpreter where importing the plugin fails.
_NO_JOBLIB = "import sys; sys.modules['hydra_plugins.hydra_joblib_launcher'] = None\n"


def _without_joblib(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_JOBLIB + code], capture_output=True, text=True, timeout=120)


def test_launcher_without_the_extra_says_how_to_install():
    p = _without_joblib("from hfrnn.cli import main\n"
                        "sys.exit(main(['train', '-m', 'hydra/launcher=local2', 'task=xor']))")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "pip install 'hfrnn[launchers]'" in p.stderr


def test_launcher_hint_when_joblib_is_missing():
    p = _without_joblib("from hfrnn.cli import CONFIG_DIR\nfrom hfrnn.config import ConfigError, check_overrides\n"
                        "try:\n    check_overrides(CONFIG_DIR, ['hydra/launcher=local2'])\n"
                        "except ConfigError as e:\n    print(e)\n    sys.exit(3)\n")
    assert p.returncode == 3, p.stderr
    assert re.search(r"Could not load 'hydra/launcher/joblib'.*pip install 'hfrnn\[launchers\]'", p.stdout)


@pytest.mark.parametrize("ok", [
    ["task=addition", "T=30", "seed=1"],
    ["task=addition,xor", "T=30,50", "seed=range(0,3)"],  # sweeps: each choice is checked
    ["task=midi", "+task.options.foo=1"],                 # an open options dict takes new keys
    ["experiment=table1_midi_small"],
    ["optimizer=sgd", "optimizer.clip=5"],
    ["hydra.run.dir=/tmp/x", "+hydra.job.env_set.A=1"],
    ["~experiment"],
])
def test_good_overrides_pass(ok):
    check_overrides(CONFIG_DIR, ok)


def test_overrides_are_told_from_flags():
    assert _overrides(["-m", "task=xor", "--cfg", "job", "T=5", "--info", "defaults", "--resolve"]) == ["task=xor", "T=5"]
    assert _overrides(["--config-name", "other", "x=1"]) is None  # another config: Hydra's to check
    assert _overrides(["--hydra-help"]) is None


def test_unknown_command_suggests(capsys):
    rc, out, err = _run(capsys, ["trian"])
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "unknown command 'trian'; did you mean 'train'?" in err
    assert "try: train, data, report" in err


def test_unknown_command_without_a_close_match(capsys):
    rc, _, err = _run(capsys, ["zzz"])
    assert rc == 2 and err == "hfrnn: unknown command 'zzz'; try: train, data, report\n"


def test_unknown_dataset_suggests(capsys):
    rc, _, err = _run(capsys, ["data", "midii"])
    assert rc == 2 and err == "hfrnn data: unknown dataset 'midii'; did you mean 'midi'? valid: bouncing_balls, midi, speech\n"


def test_version(capsys):
    rc, out, err = _run(capsys, ["--version"])
    assert rc == 0 and out == f"hfrnn {__version__}\n" and err == ""


def test_train_help_lists_groups_and_keys(capsys):
    rc, out, _ = _run(capsys, ["train", "--help"])
    assert rc == 0
    for word in ("task=", "model=", "optimizer=", "arm=", "experiment=", "hydra/launcher=", "addition", "hf_nosd",
                 "T=", "seed=", "hidden=", "budget.max_minibatches", "--cfg job"):
        assert word in out
    assert "schema" not in out and len(out.splitlines()) < 40


def test_console_script_plus_typo(tmp_path):
    """The real console entry: one stderr line, status 2, nothing on stdout (no Hydra traceback)."""
    r = subprocess.run([sys.executable, "-m", "hfrnn.cli", "train", "+hiden=50"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "hfrnn train: error: unknown key 'hiden'; did you mean 'hidden'?\n"
    assert not list(tmp_path.iterdir())
