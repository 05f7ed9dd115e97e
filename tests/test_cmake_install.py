"""cmake/: configure + build + install into a temporary prefix and HOME; Mantid settings kept."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEY = "user.python.plugins.directories"
CMAKE = shutil.which("cmake")

pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")

EXISTING = """# Mantid user settings (hand edited)
default.facility = SNS
default.instrument = SEQUOIA
{key} = {old}
datasearch.directories = /data/one;/data/two
! a bang comment
logging.loggers.root.level = notice
"""


def _run(args, env):
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _install(build, home):
    env = dict(os.environ, HOME=str(home))
    return _run([CMAKE, "--install", str(build)], env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmake")
    home, prefix, build, old = tmp / "home", tmp / "prefix", tmp / "build", tmp / "old_plugins"
    (home / ".mantid").mkdir(parents=True)
    old.mkdir()
    props = home / ".mantid" / "Mantid.user.properties"
    props.write_text(EXISTING.format(key=KEY, old=old.as_posix()))
    env = dict(os.environ, HOME=str(home))
    _run([CMAKE, "-S", str(REPO / "cmake"), "-B", str(build),
          f"-DPython3_EXECUTABLE={sys.executable}", f"-DCMAKE_INSTALL_PREFIX={prefix}"], env)
    _run([CMAKE, "--build", str(build)], env)
    log = _install(build, home)
    return dict(home=home, prefix=prefix, build=build, old=old, props=props, log=log)


def _site(prefix):
    found = list(prefix.glob("lib/python*/site-packages/insnet_core/__init__.py"))
    assert len(found) == 1, found
    return found[0].parents[1]


def test_package_and_plugin_installed(installed):
    site = _site(installed["prefix"])
    assert (site / "insnet_core" / "instruments" / "data" / "sequoia.json").is_file()
    assert (site / "insnet_core" / "mantid_adapter.py").is_file()
    assert not list(site.rglob("__pycache__"))
    plugin = installed["prefix"] / "share/insnet/plugins/algorithms/PredictINSFromCIF.py"
    assert plugin.read_bytes() == (REPO / "plugins/algorithms/PredictINSFromCIF.py").read_bytes()
    code = "import insnet_core, sys; print(insnet_core.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(site)), cwd=installed["home"])
    assert out.returncode == 0 and str(site) in out.stdout


def _value(props):
    lines = [l for l in props.read_text().splitlines() if l.startswith(KEY)]
    assert len(lines) == 1
    return [v.strip() for v in lines[0].split("=", 1)[1].split(";")]


def test_plugin_dir_appended_and_other_settings_kept(installed):
    plugin_dir = (installed["prefix"] / "share/insnet/plugins/algorithms").as_posix()
    assert _value(installed["props"]) == [installed["old"].as_posix(), plugin_dir]
    expected = EXISTING.format(key=KEY, old=installed["old"].as_posix()).replace(
        installed["old"].as_posix(), f"{installed['old'].as_posix()};{plugin_dir}")
    assert installed["props"].read_text() == expected


def test_reinstall_is_idempotent(installed):
    before = installed["props"].read_text()
    _install(installed["build"], installed["home"])
    assert installed["props"].read_text() == before


def test_fresh_home_gets_a_new_properties_file(installed, tmp_path):
    _install(installed["build"], tmp_path)
    props = tmp_path / ".mantid" / "Mantid.user.properties"
    assert _value(props) == [(installed["prefix"] / "share/insnet/plugins/algorithms").as_posix()]


def test_register_script_keeps_continuation_lines_and_crlf(tmp_path):
    sys.path.insert(0, str(REPO / "cmake"))
    try:
        from register_mantid_plugins import register
    finally:
        sys.path.pop(0)
    props = tmp_path / "Mantid.user.properties"
    props.write_bytes(b"a.b = 1\r\n" + KEY.encode() + b" = /x;\\\r\n   /y\r\nz = 2\r\n")
    assert register(props, "/y") is False                   # already listed (2nd line)
    assert register(props, "/new") is True
    assert props.read_bytes() == (b"a.b = 1\r\n" + KEY.encode() + b" = /x;/y;/new\r\nz = 2\r\n")


def _register_module():
    sys.path.insert(0, str(REPO / "cmake"))
    try:
        import register_mantid_plugins
    finally:
        sys.path.pop(0)
    return register_mantid_plugins


@pytest.mark.parametrize("folder", ["plugins,v2", "a;b"])
def test_register_refuses_a_folder_mantid_would_split(tmp_path, capsys, folder):
    module = _register_module()
    props = tmp_path / "Mantid.user.properties"
    props.write_text("a.b = 1\n")
    with pytest.raises(module.RegistrationError, match="splits"):
        module.register(props, tmp_path / folder)
    assert props.read_text() == "a.b = 1\n"                 # untouched
    rc = module.main(["--properties", str(props), "--directory", str(tmp_path / folder)])
    err = capsys.readouterr().err
    assert rc == 2 and folder in err and KEY in err


def test_register_sees_folders_listed_with_commas(tmp_path):
    module = _register_module()
    props = tmp_path / "Mantid.user.properties"
    props.write_text(f"{KEY} = /x,/y\n")
    assert module.register(props, "/y") is False             # Mantid reads /x and /y


def test_configure_refuses_an_install_prefix_with_a_comma(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))
    result = subprocess.run(
        [CMAKE, "-S", str(REPO / "cmake"), "-B", str(tmp_path / "build"),
         f"-DPython3_EXECUTABLE={sys.executable}", f"-DCMAKE_INSTALL_PREFIX={tmp_path}/a,b"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Mantid splits user.python.plugins.directories" in result.stderr.replace("\n", " ")


def test_windows_properties_location_documented():
    readme = (REPO / "README.md").read_text()
    assert "INSNET_MANTID_PROPERTIES=C:/MantidInstall/bin/Mantid.user.properties" in readme
    assert "Windows" in (REPO / "cmake" / "CMakeLists.txt").read_text()
