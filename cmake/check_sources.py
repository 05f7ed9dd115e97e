"""Byte-compile the given Python files (in memory); exit 1 naming any that do not compile."""
import sys


def main(paths):
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
        try:
            compile(source, path, "exec")
        except SyntaxError as exc:
            print(f"insnet: {path}:{exc.lineno}: {exc.msg}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
