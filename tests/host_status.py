"""Print whether the host tests will run, and against which ComfyUI (used by .ci/run)."""

from host_support import find_host

if __name__ == "__main__":
    host, sentence = find_host()
    print(("Host tests WILL RUN: " if host else "Host tests will NOT run: ") + sentence)
