"""Warm docker sandboxes: one hardened container per tenant whose command is the zygote.

The container is the cold path's (`app.sandbox.docker`): no network, read-only root, no
capabilities, no-new-privileges, uid 65534, a private IPC namespace, a memory, pids and CPU limit.
Inside, the zygote makes the user, mount and PID namespaces bwrap makes for the bwrap zygote
(``zygote.py --own-namespaces``) and forks each run exactly as there: the same views, limits,
cgroups (the host opens each run's ``cgroup.procs`` and passes it in), protocol and clean-up.

That needs two things a cold container does not get:
  * a seccomp profile (``seccomp_profile``) that is the engine's default for a container without
    capabilities, plus ``unshare``, ``setns``, ``mount``, ``umount2`` and ``clone`` with namespace
    flags: the zygote builds namespaces; every run still gets EPERM from the kernel, because it
    holds no capability, and user namespaces are closed to it (``max_user_namespaces`` is 0 in the
    zygote's namespace);
  * no masked or read-only /proc paths (the CLI's ``systempaths=unconfined``): the engine's masks
    would make the kernel refuse a fresh proc mount. The container's user is never root (uid
    65534 cannot write the host's /proc/sys), and every run sees a read-only proc of its own PID
    namespace.
The host listens on a Unix socket in a directory bound into the container (the zygote connects
to it: an engine cannot pass a socketpair's end), then speaks the bwrap zygote's protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.sandbox.base import Limits, SandboxError
from app.sandbox.child import runner_env
from app.sandbox.resources import CGROUP_PREFIX, ContainerResources, ResourceControl, cgroups_usable
from app.sandbox.staging import SandboxDirs
from app.sandbox.warm import Zygote, ZygoteProcess

if TYPE_CHECKING:
    import docker

    from app.sandbox.docker import DockerBackend  # which starts these zygotes

CONTAINER_CTL = "/ctl"
CONTAINER_ZYGOTE = "/runner/zygote.py"  # in the runner image, beside runner.py (one digest for both)
_CONNECT_TIMEOUT_S = 60.0
# Room in the container's limits for the zygote and the runs it is forking (each leaves for its own
# cgroup at once; where the host has none to give, all of a tenant's runs stay and share it).
_LIMIT_FACTOR = 4

# The engine's default seccomp allowlist for a container without capabilities.
_DEFAULT_ALLOWED = """
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
    clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
    clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
    epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
    execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
    fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
    futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
    getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
    getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
    inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
    io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
    lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
    madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
    mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
    name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal
    pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
    prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
    readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
    renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
    sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
    sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
    setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
    setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask
    sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
    sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
    timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
    timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev process_vm_readv
    process_vm_writev ptrace arch_prctl modify_ldt
""".split()  # noqa: SIM905 (a list literal of 354 names would be 354 lines)
# What the zygote needs on top to build namespaces; clone is then allowed with any flags.
_ZYGOTE_EXTRA = ["unshare", "setns", "mount", "umount2"]
_AF_VSOCK = 40
_PERSONALITIES = (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)


@cache
def seccomp_profile() -> str:
    """The profile of a warm container, as the engine takes it (JSON text)."""
    rules: list[dict[str, Any]] = [
        {"names": [*_DEFAULT_ALLOWED, *_ZYGOTE_EXTRA, "clone"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
          "args": [{"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"}]},
        *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]} for value in _PERSONALITIES),
        # glibc falls back to clone when clone3 is "not implemented"; clone's flags stay visible to seccomp.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ]
    return json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": rules,
    })


class ContainerProcess:
    """The container's first process as the host sees it: alive while the zygote's end of the socket
    is open (its pid is the engine's, maybe of a PID namespace a server in a container cannot see)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        # Peeked through a socket object of its own without a timeout: recv on one with a timeout
        # (wait_ready sets one on the zygote's) waits for data whatever its flags say, and this is
        # called with the pool's lock held.
        self._peek = sock.dup()
        self._peek.settimeout(None)
        self._ended = False

    def poll(self) -> int | None:
        if not self._ended:
            try:
                self._ended = self._peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except (BlockingIOError, InterruptedError):
                pass  # nothing to read: open
            except OSError:  # closed here
                self._ended = True
        return -9 if self._ended else None

    def close(self) -> None:
        self._ended = True
        self._peek.close()


class DockerZygote(Zygote):
    """The zygote as a container's command, spoken to over a socket in its bound ``ctl`` dir."""

    log_name = "ctl/zygote.log"

    def __init__(self, backend: DockerBackend, limits: Limits, *, prefork: bool = False) -> None:
        self.backend = backend
        self.client: docker.DockerClient = backend.client
        self.container_id: str | None = None
        super().__init__(backend.work_dir, limits, use_cgroups=True, prefork=prefork)

    def _own_resources(self) -> ResourceControl:
        # The engine enforces the container's limits; this reads its cgroup and kills by removing it.
        return ContainerResources(self.limits)

    def _prepare_run(self, dirs: SandboxDirs) -> None:
        # The zygote's user (65534 on the host) enters the run's dir and writes its out dir, as in a
        # cold container; other users of the host never get past the zygote's 0700 root.
        dirs.root.chmod(0o711)
        dirs.out.chmod(0o777)

    def _launch(self) -> tuple[ZygoteProcess, socket.socket]:
        # Permissions, not ownership, let the container's user in (a server that is not root cannot
        # chown); the engine binds these dirs by path, the 0700 root above them keeps everyone else out.
        ctl = self.root / "ctl"
        ctl.mkdir()
        (ctl / "zygote.log").touch()
        for path, mode in ((self.runs_dir, 0o711), (self.fmus_dir, 0o755), (ctl, 0o777), (ctl / "zygote.log", 0o666)):
            path.chmod(mode)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A Unix socket's path holds 108 bytes; a deep work dir would not fit: bind through a dir fd.
            dir_fd = os.open(ctl, os.O_PATH | os.O_DIRECTORY)
            try:
                listener.bind(f"/proc/self/fd/{dir_fd}/zygote.sock")
            finally:
                os.close(dir_fd)
            (ctl / "zygote.sock").chmod(0o777)
            listener.listen(1)
            listener.settimeout(_CONNECT_TIMEOUT_S)
            pid = self._start_container(ctl)
            try:
                sock, _ = listener.accept()
            except OSError as e:
                self._remove()
                raise SandboxError(f"warm container {self.id} did not connect: {e}; {self.log_tail()}") from e
            sock.settimeout(None)
            return ContainerProcess(pid, sock), sock
        finally:
            listener.close()
            with contextlib.suppress(OSError):
                (ctl / "zygote.sock").unlink()

    def _start_container(self, ctl: Path) -> int:
        """Create and start the container; its first process's pid, in the engine's namespace."""
        import docker.errors

        try:
            created = self.client.api.create_container_from_config(self.container_config(ctl))
            self.container_id = created["Id"]
            self.client.api.start(self.container_id)
            pid = int(self.client.api.inspect_container(self.container_id)["State"]["Pid"])
        except (docker.errors.DockerException, OSError, ValueError) as e:
            self._remove()
            raise SandboxError(f"cannot start a warm container: {e}") from e
        assert isinstance(self.resources, ContainerResources)
        self.resources.bind(pid, kill=self._remove)
        return pid

    def container_config(self, ctl: Path) -> dict[str, Any]:
        """The body of the engine's create-container request."""
        from docker.types import Mount

        backend, limits = self.backend, self.limits
        host_config = backend.hardened_host_config(
            limits, memory_bytes=limits.memory_bytes * _LIMIT_FACTOR,
            max_processes=limits.max_processes * _LIMIT_FACTOR,
            # Mount points only: each run mounts its own tmpfs and dirs over them.
            tmpfs={"/tmp": "rw,nosuid,nodev,size=16m,mode=1777", "/job": "ro,size=4k,mode=755",
                   "/out": "ro,size=4k,mode=755"},
            mounts=[
                Mount("/runs", str(self.runs_dir), type="bind"),
                Mount("/fmus", str(self.fmus_dir), type="bind", read_only=True),
                Mount(CONTAINER_CTL, str(ctl), type="bind"),
            ],
            security_opt=(f"seccomp={seccomp_profile()}",),
            cpu_limit=False,  # its runs leave for cgroups of their own
            auto_remove=True,  # whoever stops it (we, the engine, its own end), it goes
        )
        # What the CLI's "systempaths=unconfined" means: none of the engine's masks over /proc.
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])
        command = [backend.python_in_image, "-I", "-B", CONTAINER_ZYGOTE, "--socket-path",
                   f"{CONTAINER_CTL}/zygote.sock", "--own-namespaces", "--log-file", f"{CONTAINER_CTL}/zygote.log",
                   "--sandbox-id", self.id]
        if not cgroups_usable(limits, CGROUP_PREFIX + self.id):
            # Its runs will be bounded by RLIMIT_AS, which they inherit from it: the zygote must fit
            # (the engine has no such ulimit), as a bwrap zygote does under the same fallback.
            command += ["--address-space", str(limits.memory_bytes)]
        return backend.hardened_container_config(
            self.id, host_config, command=command,
            environment=runner_env("/tmp", self.id), stdin_open=False,
        )

    def _remove(self) -> None:
        import docker.errors

        if self.container_id is not None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.remove_container(self.container_id, force=True)

    def _stop(self) -> None:
        self._remove()  # the engine kills the container (every run in it) and waits for it
        assert isinstance(self._proc, ContainerProcess)
        self._proc.close()
