"""Warm sandbox zygote: one long-lived process per tenant, forking one isolated process tree per run.

Standalone script, next to ``runner.py`` (it imports the runner's functions, never the app), run
either in a bwrap sandbox (``--socket-fd``), which gives it ``CAP_SYS_ADMIN`` and ``CAP_SETPCAP``
in its own user namespace and nothing else, or as a hardened container's command
(``--socket-path --own-namespaces``), where it makes those namespaces itself
(``enter_own_namespaces``). No run keeps any capability.

Protocol with the host (the socket, Unix stream; requests carry file descriptors):
  1. zygote: imports FMPy and NumPy (warm), makes itself non-dumpable, writes
     ``{"event": "ready", ...}`` as one JSON line on the socket
  2. host:   sends one JSON line per run, ``{"run": NAME, "rlimits": {...}, "tmpfs_bytes": N}``,
     with the descriptors ``[stdin, control, log, *cgroup.procs]`` of that run
  3. zygote: forks the run's init (below) into a new PID namespace and forgets the descriptors;
     it never reads the run's pipes, never loads a model and never waits on a run
When the socket closes (the host is gone) the zygote exits, and the init of its PID namespace
(bwrap's, or the container's) kills every run.

A run, seen from the host, speaks the runner's protocol (see ``runner.py``) on its own pipes:
``ready``, ``running``, ``done`` and ``exit`` on control, the model's output on log, ``go`` (with
the name of its FMU under /fmus, where the host links each FMU once per zygote) and hang-up on
stdin. Inside:
  * init (PID 1 of a new PID namespace): joins the run's cgroups, unshares mount and IPC
    namespaces, mounts the run's view (its own job dir read-only and out dir, fresh tmpfs on
    /tmp and /dev/shm, a fresh read-only /proc, everything else read-only, the other runs'
    dirs covered), forks the runner and supervises it: relays its messages (never ``exit``),
    at ``go`` binds the job's FMU read-only on /job/fmu and covers /fmus, then passes ``go`` on,
    kills everything when the host hangs up, reaps every orphan, reports
    ``exit`` with the runner's wait status and the namespace's resource use, and exits;
    the kernel then kills whatever is left in the namespace. Init is not dumpable and, as
    PID 1, cannot be signalled from inside: the model cannot forge its report.
  * runner (PID 2): rlimits, then drops every capability for good (bounding and ambient
    sets cleared, no new privileges) and runs ``runner.serve``: reads ``/job``, writes ``/out``.
    Its imports are the zygote's; it warms up again only when the request says ``"warm": true``
    (forked ahead of its job, it has the time: see ``Zygote._fork``).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes
import gc
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # python -I leaves the script's dir out
import runner

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECUREBITS = 28
SECURE_NOROOT_ALL = 0x2F  # NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each locked
CAP_SETPCAP, CAP_SYS_ADMIN = 8, 21
EINVAL = 22
MNT_DETACH = 2
CAP_LAST_CAP = 63  # drop every number up to here; unknown ones fail with EINVAL and are skipped

RUNS_DIR = "/runs"
FMUS_DIR = "/fmus"
FMU_NAME = re.compile(r"^fmu[0-9]{1,9}$")
JOB_DIR = "/job"
OUT_DIR = "/out"
MAX_REQUEST_BYTES = 64 << 10
MAX_FDS = 8
RUN_NAME = re.compile(r"^[a-z0-9-]{1,64}$")
_RELAYED_ONCE = frozenset({runner.READY, runner.RUNNING, runner.DONE})
_RELAYED_EACH = frozenset({runner.CHILD_STARTED, runner.CHILD_DONE, runner.RESET_CHECKED})
_MAX_REPORT_BYTES = 64 << 10
_POLL_MS = 10
_IDLE_POLL_MS = 1000
_REAP_POLL_S = 0.5

_libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def encode(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(_libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket-fd", type=int)  # bwrap: a socketpair's end, inherited
    where.add_argument("--socket-path")  # a container: the host listens on a socket in a bound dir
    parser.add_argument("--own-namespaces", action="store_true",
                        help="make the user, mount and PID namespaces bwrap would have made (in a container)")
    parser.add_argument("--log-file", help="stderr goes here (a container's own output is not kept)")
    parser.add_argument("--address-space", type=int,
                        help="RLIMIT_AS of the zygote, set before its imports (runs without cgroups get it)")
    parser.add_argument("--sandbox-id", default="")  # makes the process tree findable in ps and tests
    args = parser.parse_args(argv)

    if args.log_file:
        log = os.open(args.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.dup2(log, 2)
        os.close(log)
    if args.socket_path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.socket_path)
    else:
        sock = socket.socket(fileno=args.socket_fd)
    if args.own_namespaces:
        enter_own_namespaces(sock)
    if args.address_space:
        # Allocators that reserve address space up front then fit under it, as in a run.
        resource.setrlimit(resource.RLIMIT_AS, (args.address_space, args.address_space))
    runner.warm_up()
    # Objects of the imports are never collected: a run's garbage collector then does not touch
    # (and copy) the pages it shares with the zygote.
    gc.collect()
    gc.freeze()
    deny_user_namespaces()
    # CAP_SYS_RESOURCE was for the limit above only; runs drop the other two as well.
    keep_capabilities(frozenset({CAP_SYS_ADMIN, CAP_SETPCAP}))
    # Runs fork from here as the same user: they must not trace it or write its memory.
    runner.undumpable()
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    times = os.times()
    ready = {"event": runner.READY, "pid": os.getpid(), "cpu_time_s": times.user + times.system}
    sock.sendall(json.dumps({**ready, **runner.memory_status()}).encode() + b"\n")
    serve(sock, own_pid_ns)


def enter_own_namespaces(sock: socket.socket) -> None:
    """What bwrap does for the zygote, done by itself (in a container, whose seccomp profile lets
    it): a user namespace where it is root with every capability (the container's user outside),
    a mount namespace, and a PID namespace whose init it becomes, which lets it mount a fresh
    /proc. The process that called this stays outside, waits, and passes the zygote's end on."""
    uid, gid = os.getuid(), os.getgid()
    check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID), "unshare(CLONE_NEWUSER|NEWNS|NEWPID)")
    for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                       ("/proc/self/gid_map", f"0 {gid} 1")):
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
    pid = os.fork()
    if pid:
        sock.close()
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def serve(sock: socket.socket, own_pid_ns: int) -> None:
    pending = b""
    while True:
        reap()
        if not select.select([sock], [], [], _REAP_POLL_S)[0]:
            continue
        data, fds = receive(sock)
        if not data:
            os._exit(0)  # the host is gone
        pending += data
        if b"\n" not in pending:
            if len(pending) > MAX_REQUEST_BYTES:
                os._exit(2)
            for fd in fds:
                os.close(fd)
            continue
        line, pending = pending.split(b"\n", 1)
        try:
            fork_run(json.loads(line), fds, sock, own_pid_ns)
        except Exception:
            traceback.print_exc()  # the run's pipes close with its descriptors: the host sees it end
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancdata, _, _ = sock.recvmsg(MAX_REQUEST_BYTES, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def reap() -> None:
    """Collect finished inits; their runs report to the host themselves."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def fork_run(request: dict[str, Any], fds: list[int], sock: socket.socket, own_pid_ns: int) -> None:
    name = request.get("run")
    if not isinstance(name, str) or not RUN_NAME.match(name) or len(fds) < 3:
        raise ValueError(f"bad run request: {request!r}")
    sys.stderr.flush()
    # The next child is PID 1 of a new PID namespace; setns puts the zygote's own back for the next run.
    check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    try:
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                os.close(own_pid_ns)
                init(name, request, fds)
            except BaseException:
                with contextlib.suppress(BaseException):
                    os.write(fds[2], traceback.format_exc().encode()[-4000:])
            os._exit(70)
    finally:
        check(_libc.setns(own_pid_ns, CLONE_NEWPID), "setns(pid)")


def init(name: str, request: dict[str, Any], fds: list[int]) -> None:
    """PID 1 of the run's namespace: build its view, start the runner, supervise it, report."""
    stdin, control_fd, log_fd, *cgroup_procs = fds
    for fd in cgroup_procs:  # join the run's cgroups before anything is allocated for it
        os.write(fd, b"0")
        os.close(fd)
    check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS|CLONE_NEWIPC)")
    build_view(name, int(request.get("tmpfs_bytes") or 0))
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (stdin, control_fd, report_r, go_w):
                os.close(fd)
            os.dup2(go_r, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            for fd in (go_r, log_fd):
                os.close(fd)
            set_rlimits(request.get("rlimits") or {})
            drop_privileges()
            control = os.fdopen(report_w, "w", buffering=1, encoding="utf-8")
            runner.serve(Path(JOB_DIR), Path(OUT_DIR), control, warm=request.get("warm") is True)
        except BaseException:
            traceback.print_exc()
        os._exit(70)
    for fd in (report_w, go_r, log_fd):
        os.close(fd)
    control = os.fdopen(control_fd, "w", buffering=1, encoding="utf-8")
    supervise(pid, stdin, report_r, go_w, control)


def build_view(name: str, tmpfs_bytes: int) -> None:
    """This run's files only: its job (read-only) and out dirs, fresh scratch space, read-only rest."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    run_dir = f"{RUNS_DIR}/{name}"
    mount(f"{run_dir}/job", JOB_DIR, None, MS_BIND)
    mount(None, JOB_DIR, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(f"{run_dir}/out", OUT_DIR, None, MS_BIND)
    mount(None, OUT_DIR, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    size = f",size={tmpfs_bytes}" if tmpfs_bytes > 0 else ""
    scratch = MS_NOSUID | MS_NODEV
    # A Python installation under /tmp (a checkout there) must stay visible under the fresh /tmp.
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in python_dirs_under("/tmp")]
    mount("tmpfs", "/tmp", "tmpfs", scratch, "mode=1777" + size)
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | scratch)
        os.close(fd)
    # No run sees another's dirs. bwrap's mounts are locked in a namespace made from its own, so
    # /runs cannot be unmounted: an empty read-only tmpfs covers it, and without capabilities
    # the run cannot lift it.
    mount("tmpfs", RUNS_DIR, "tmpfs", MS_RDONLY | scratch | MS_NOEXEC, "size=4k,mode=0555")
    mount("tmpfs", "/dev/shm", "tmpfs", scratch | MS_NOEXEC, "mode=1777" + size)
    # Read-only: as the host's root mapped in, the run could otherwise write kernel sysctls.
    mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # The sandbox's root and /dev are tmpfs shared by every run of this zygote: read-only here.
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    os.chdir("/tmp")


def bind_fmu(name: str) -> None:
    """At "go": the job's FMU (staged once per zygote under /fmus) read-only on /job/fmu; then /fmus,
    the other FMUs of this tenant, is covered before the runner goes on."""
    if name:
        if not FMU_NAME.match(name):
            raise ValueError(f"bad FMU name {name!r}")
        target = f"{JOB_DIR}/{runner.FMU_DIR}"
        mount(f"{FMUS_DIR}/{name}", target, None, MS_BIND)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount("tmpfs", FMUS_DIR, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")


def python_dirs_under(root: str) -> list[str]:
    """The interpreter's directories (installation, venv) below `root`, outermost only."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    below = sorted(p for p in found if p.startswith(root.rstrip("/") + "/"))
    return [p for p in below if not any(p.startswith(q.rstrip("/") + "/") for q in below if q != p)]


def set_rlimits(limits: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    names = {"as": resource.RLIMIT_AS, "fsize": resource.RLIMIT_FSIZE, "nproc": resource.RLIMIT_NPROC}
    for key, which in names.items():
        value = limits.get(key)
        if isinstance(value, int):
            hard = resource.getrlimit(which)[1]
            # The zygote's own limit (set when it started) is the ceiling: without capabilities, never raised.
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
    cpu = limits.get("cpu")
    if isinstance(cpu, int):
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL a second later


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def keep_capabilities(keep: frozenset[int]) -> None:
    """Only `keep` left in the effective, permitted and bounding sets; none inheritable or ambient."""
    check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    for cap in range(CAP_LAST_CAP + 1):
        if cap not in keep and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != EINVAL:
            check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
    if not keep:
        # Root of this user namespace gets no capabilities back from execve or setuid, for good.
        check(_libc.prctl(PR_SET_SECUREBITS, SECURE_NOROOT_ALL, 0, 0, 0), "prctl(PR_SET_SECUREBITS)")
    header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (CapData * 2)()
    for cap in keep:
        data[cap // 32].effective |= 1 << (cap % 32)
        data[cap // 32].permitted |= 1 << (cap % 32)
    check(_libc.capset(ctypes.byref(header), data), "capset")


def drop_privileges() -> None:
    """No capability left in any set, none to regain: the run cannot mount, unmount or trace."""
    keep_capabilities(frozenset())


def deny_user_namespaces() -> None:
    """No run may create a user namespace (and be root with capabilities in it): set the limit to 0
    for the zygote's own namespace, through a proc instance of its own (bwrap's /proc/sys is read-only)."""
    proc = "/tmp/.proc"
    os.mkdir(proc, 0o700)
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    try:
        with open(f"{proc}/sys/user/max_user_namespaces", "w", encoding="ascii") as f:
            f.write("0")
    finally:
        check(_libc.umount2(proc.encode(), MNT_DETACH), "umount")
        os.rmdir(proc)


def supervise(pid: int, stdin: int, report: int, go: int, control: IO[str]) -> None:
    """Relay the runner's messages, pass "go" on, reap everything, report how the runner ended."""
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    poller.register(report, select.POLLIN)
    relay = Relay(control)
    status: int | None = None
    peak_vm = 0
    go_open = report_open = True
    while status is None:
        # Before "go" nothing runs whose memory could grow: a warm run waiting for its job wakes
        # when the host or the runner says something, else once a second (not a hundred times).
        waiting = go_open and report_open
        for fd, events in poller.poll(_IDLE_POLL_MS if waiting else _POLL_MS):
            data = os.read(fd, 65536) if events & (select.POLLIN | select.POLLHUP) else b""
            if fd == report:
                relay.feed(data)
                if not data:
                    poller.unregister(report)
                    report_open = False
            elif data and go_open and data.startswith(runner.GO[:2]):
                bind_fmu(data.split(b"\n", 1)[0][3:].decode("ascii", "replace"))
                os.write(go, runner.GO)
                os.close(go)
                go_open = False
            elif not data:  # the host hung up: whoever enforces the deadline is gone, or it cancelled
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)  # as PID 1: every process of this run, never the zygote
                poller.unregister(stdin)
        # Under RLIMIT_AS alone a failed allocation looks like any crash; the peak tells them apart.
        peak_vm = max(peak_vm, runner.vm_peak(pid))
        status = reap_all(pid)
    with contextlib.suppress(OSError):
        while select.select([report], [], [], 0)[0] and relay.feed(os.read(report, 65536)):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)  # daemons the runner left: the run is over
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)  # each was sent SIGKILL: reaping them adds their CPU time to ours
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the runner and every orphan this init reaped
    runner.send(
        control, runner.EXIT, status=status, max_rss_bytes=usage.ru_maxrss * 1024,
        cpu_time_s=usage.ru_utime + usage.ru_stime, peak_vm_bytes=peak_vm,
    )  # fmt: skip
    os._exit(0)


def reap_all(runner_pid: int) -> int | None:
    """Reap every exited process (init inherits the orphans); the runner's wait status once it ended."""
    found = None
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            if pid == runner_pid:
                found = status
    return found


class Relay:
    """Forwards the runner's first ready/running/done lines and every sweep-chunk line; ``exit`` is
    init's alone to send."""

    def __init__(self, control: IO[str]) -> None:
        self.control = control
        self.buffer = b""
        self.received = 0
        self.sent: set[str] = set()

    def feed(self, data: bytes) -> bool:
        self.received += len(data)
        if not data or self.received > _MAX_REPORT_BYTES:
            return False
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            event = message.get("event") if isinstance(message, dict) else None
            if not isinstance(event, str) or event in self.sent:
                continue
            if event in _RELAYED_ONCE or event in _RELAYED_EACH:
                if event in _RELAYED_ONCE:
                    self.sent.add(event)
                self.control.write(json.dumps(message) + "\n")
        return True


if __name__ == "__main__":
    main()
