"""Add a folder to Mantid's ``user.python.plugins.directories`` without touching anything else.

Usage::

    python register_mantid_plugins.py --directory DIR [--properties FILE]

``FILE`` defaults to ``$HOME/.mantid/Mantid.user.properties`` (Linux, macOS)
and is created (with its folder) when missing. On Windows, Mantid keeps the
user properties in its base directory (next to ``Mantid.properties``, e.g.
``C:/MantidInstall/bin/Mantid.user.properties``), so ``--properties`` is
required there (CMake: ``-DINSNET_MANTID_PROPERTIES=...``).

Mantid's ConfigService splits the value on both ``;`` and ``,``, so ``DIR``
must contain neither (refused with a message). ``DIR`` is appended, with
``;``, unless it is already listed (same folder after normalisation), so
running this twice changes nothing. Every other line of the
file (comments, blank lines, other settings, their order and spelling) is kept
as it is; a multi-line (backslash-continued) value of this key is rewritten as
one line. The file is replaced atomically.

Run by the ``install`` step of ``cmake/CMakeLists.txt``; stdlib only.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

KEY = "user.python.plugins.directories"
_SEPARATOR = re.compile(r"\s*[=:]\s*|\s+")
#: Characters on which Mantid's ConfigService splits a list of folders.
_LIST_SEPARATORS = re.compile(r"[;,]")


class RegistrationError(ValueError):
    """The folder cannot be registered (the message says why and what to do)."""


def check_directory(directory):
    """Refuse a folder Mantid would split into several (it splits on ';' and ',').

    Raises
    ------
    RegistrationError
    """
    text = str(directory)
    bad = sorted(set(_LIST_SEPARATORS.findall(text)))
    if bad:
        raise RegistrationError(
            f"insnet: cannot register the plugin folder {text!r}: it contains "
            f"{' and '.join(repr(c) for c in bad)}, and Mantid splits "
            f"{KEY} on ';' and ','; install to a prefix without them "
            "(-DCMAKE_INSTALL_PREFIX=... or -DINSNET_PLUGIN_DIR=...)")


def _continues(line):
    """True when a properties line ends with an odd number of backslashes."""
    stripped = line.rstrip("\r\n")
    count = len(stripped) - len(stripped.rstrip("\\"))
    return count % 2 == 1


def _logical_lines(lines):
    """Yield (first index, last index, joined text) of each logical line."""
    i = 0
    while i < len(lines):
        start = i
        text = lines[i].rstrip("\r\n")
        is_comment = text.lstrip().startswith(("#", "!"))
        while not is_comment and _continues(lines[i]) and i + 1 < len(lines):
            text = text[:-1] + lines[i + 1].rstrip("\r\n").lstrip()
            i += 1
        yield start, i, text, is_comment
        i += 1


def _split(text):
    body = text.lstrip()
    match = _SEPARATOR.search(body)
    if match is None:
        return body, ""
    return body[:match.start()], body[match.end():]


def _same_folder(a, b):
    def norm(p):
        return os.path.normcase(os.path.normpath(os.path.abspath(os.path.expanduser(p))))
    return norm(a) == norm(b)


def register(properties, directory):
    """Update ``properties`` so that its plugin folders include ``directory``.

    Returns
    -------
    bool
        True when the file was changed, False when ``directory`` was listed.
    """
    check_directory(directory)
    properties = Path(properties)
    directory = Path(directory).absolute().as_posix()
    check_directory(directory)
    text = properties.read_bytes().decode("utf-8") if properties.exists() else ""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    found = None
    for start, end, logical, is_comment in _logical_lines(lines):
        if is_comment:
            continue
        key, value = _split(logical)
        if key == KEY:
            found = (start, end, value)  # the last occurrence wins, as in Java properties
    if found is None:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        lines.append(f"{KEY} = {directory}{newline}")
    else:
        start, end, value = found
        folders = [v.strip() for v in _LIST_SEPARATORS.split(value) if v.strip()]
        if any(_same_folder(f, directory) for f in folders):
            return False
        folders.append(directory)
        ending = newline if lines[end].endswith(("\n", "\r")) else ""
        lines[start:end + 1] = [f"{KEY} = {';'.join(folders)}{ending}"]
    properties.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".Mantid.user.properties.", dir=properties.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write("".join(lines))
        if properties.exists():
            os.chmod(tmp, properties.stat().st_mode & 0o7777)
        os.replace(tmp, properties)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="plugin folder to add")
    parser.add_argument("--properties", default=None,
                        help="Mantid.user.properties (default: $HOME/.mantid/...)")
    args = parser.parse_args(argv)
    props = args.properties
    if not props and os.name == "nt":
        print("insnet: on Windows, Mantid keeps Mantid.user.properties in its base directory "
              "(e.g. C:\\MantidInstall\\bin); give --properties (CMake: "
              "-DINSNET_MANTID_PROPERTIES=<that file>)", file=sys.stderr)
        return 2
    if not props:
        home = os.environ.get("HOME")
        if not home:
            print("insnet: HOME is not set; give --properties", file=sys.stderr)
            return 2
        props = os.path.join(home, ".mantid", "Mantid.user.properties")
    try:
        changed = register(props, args.directory)
    except RegistrationError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"insnet: {'added' if changed else 'already listed:'} {args.directory} "
          f"{'to' if changed else 'in'} {KEY} in {props}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
