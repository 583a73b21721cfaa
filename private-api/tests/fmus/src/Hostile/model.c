/* Deliberately misbehaving FMU for sandbox tests: from t >= 0.5 fmi2DoStep does what `mode` asks.
 *
 *  0 normal              4 sleep(3600)             8 connect 1.1.1.1:53 and 127.0.0.1:port
 *  1 segfault            5 allocate memory forever 9 look for a secret env var and file
 *  2 abort()             6 return fmi2Error         10 write target_file and /tmp/hostile-probe
 *  3 endless busy loop   7 fork bomb               11 leave a daemonised child process running
 * 12 fill the directory target_file names (e.g. /out) with 16 MiB files, forever
 * 13 reach the parent process (the sandbox's supervisor): ptrace-attach it, open its memory
 * 14 plant state for later runs: files in /tmp, /dev/shm, the cwd and target_file, a SysV shared
 *    memory segment, a daemon, a flag in static memory; probe counts what was planted
 * 15 look for what mode 14 plants: probe = 1 /tmp file, 2 /dev/shm file, 4 cwd file, 8 SysV
 *    segment, 16 another process besides init and us, 32 static flag, 64 target_file
 * 16 kill(-1, SIGKILL): everything the model may signal; probe = kill's result
 * 17 escape attempts: probe = 1 umount /proc, 2 remount /job writable, 4 new tmpfs mount,
 *    8 new user namespace, 16 setuid(1); each one that succeeded
 * 18 an inexact fmi2Reset: probe = how often this instance was reset (0 on a fresh instance)
 * 19 copy its own binary out: over target_file (e.g. the result), into the cwd, /tmp and stderr;
 *    probe = bytes of the binary it read (0: it could not find or read itself)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fmi2_framework.h"

enum { VR_Y, VR_PROBE, VR_MODE, VR_PORT, VR_TARGET_ENV, VR_TARGET_FILE };

const char *const MODEL_GUID = "{7de65f66-af5b-47fd-8d3a-05419144d94d}";
const char MODEL_VARIABLE_TYPES[] = "RRIISS";
const int MODEL_NX = 0;
const fmi2ValueReference MODEL_STATES[] = {0};
const fmi2ValueReference MODEL_DERIVATIVES[] = {0};

#define TRIGGER_TIME 0.5
#define FLAG_TRIGGERED 1
#define HOG_CHUNK ((size_t)64 << 20)
#define CONNECT_TIMEOUT_S 2
#define PLANT_KEY 0x484f5354
#define PLANT_NAME "hostile-plant"

/* set by mode 14: a later run that loads this library fresh must see it 0 */
static volatile int planted_static;

/* writes 16 MiB files into dir until something stops the process; returns only if nothing can be written */
static void fill_directory(const char *dir) {
    static char block[1 << 20];
    char path[4096];
    memset(block, 'x', sizeof block);
    for (long n = 0;; n++) {
        FILE *f;
        snprintf(path, sizeof path, "%s/junk-%ld", dir ? dir : "/out", n);
        if ((f = fopen(path, "wb")) == NULL) return;
        for (int i = 0; i < 16; i++) fwrite(block, 1, sizeof block, f);
        fclose(f);
    }
}

/* keeps every hogged chunk reachable so the compiler cannot drop malloc + memset as dead code */
static void *volatile hog_list;

void model_set_start_values(Instance *inst) {
    inst->r[VR_PROBE] = 0;
    inst->i[VR_MODE] = 0;
    inst->i[VR_PORT] = 8000;
    fmu_set_string(inst, VR_TARGET_ENV, "FMU_GATEWAY_SECRET_KEY");
    fmu_set_string(inst, VR_TARGET_FILE, "/var/tmp/fmu-gateway-hostile-probe");
}

void model_calculate(Instance *inst) { inst->r[VR_Y] = inst->time; }

/* 1 if a TCP connect succeeds, 0 if it fails, -1 if no socket could be created */
static int try_connect(const char *ip, int port) {
    struct sockaddr_in addr;
    struct timeval timeout = {CONNECT_TIMEOUT_S, 0};
    int fd, ok;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;

    /* a firewall that silently drops SYNs would otherwise block for minutes */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &addr.sin_addr);

    ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

/* 1 if text could be written to path and the file closed cleanly */
static int try_write(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    int ok;
    if (f == NULL) return 0;
    ok = fputs(text, f) >= 0;
    return (fclose(f) == 0) && ok;
}

/* the bytes of this very shared library, copied wherever the model can write; returns their count */
static double copy_self(const char *target) {
    static char bytes[8 << 20];
    Dl_info info;
    size_t size;
    FILE *self;
    const char *places[] = {target, "stolen.so", "/tmp/stolen.so"};
    if (!dladdr((void *)copy_self, &info) || info.dli_fname == NULL) return 0;
    if ((self = fopen(info.dli_fname, "rb")) == NULL) return 0;
    size = fread(bytes, 1, sizeof bytes, self);
    fclose(self);
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        FILE *out = places[i] != NULL ? fopen(places[i], "wb") : NULL;
        if (out != NULL) {
            fwrite(bytes, 1, size, out);
            fclose(out);
        }
    }
    fwrite(bytes, 1, size, stderr);
    fflush(stderr);
    return (double)size;
}

/* double-fork a setsid()'d grandchild that sleeps forever; returns its pid or -1 */
static pid_t spawn_orphan(void) {
    int fds[2];
    pid_t child, orphan = -1;

    if (pipe(fds) != 0) return -1;

    child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }

    if (child == 0) {
        pid_t grandchild;
        close(fds[0]);
        setsid();
        grandchild = fork();
        if (grandchild == 0) {
            int fd, devnull = open("/dev/null", O_RDWR);
            /* detach from inherited pipes so only the process itself lingers, not the caller's I/O */
            if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
                dup2(devnull, 2);
            }
            for (fd = 3; fd < 1024; fd++) close(fd);
            for (;;) sleep(60);
        }
        if (write(fds[1], &grandchild, sizeof(grandchild)) != (ssize_t)sizeof(grandchild)) _exit(1);
        _exit(0);
    }

    close(fds[1]);
    if (read(fds[0], &orphan, sizeof(orphan)) != (ssize_t)sizeof(orphan)) orphan = -1;
    close(fds[0]);
    waitpid(child, NULL, 0);
    return orphan;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* processes other than init (pid 1) and ourselves visible in /proc */
static int other_processes(void) {
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    int found = 0;
    if (proc == NULL) return 0;
    while ((entry = readdir(proc)) != NULL) {
        const int pid = atoi(entry->d_name);
        if (pid > 1 && pid != getpid()) found = 1;
    }
    closedir(proc);
    return found;
}

static double plant(const char *target) {
    double planted = try_write("/tmp/" PLANT_NAME, "planted") + try_write("/dev/shm/" PLANT_NAME, "planted") +
                     try_write(PLANT_NAME, "planted");
    if (target != NULL) planted += try_write(target, "planted");
    if (shmget(PLANT_KEY, 4096, IPC_CREAT | 0666) >= 0) planted += 1;
    if (spawn_orphan() > 0) planted += 1;
    planted_static = 1;
    return planted + 1;
}

static double look(const char *target) {
    int shm = shmget(PLANT_KEY, 0, 0);
    return exists("/tmp/" PLANT_NAME) + 2 * exists("/dev/shm/" PLANT_NAME) + 4 * exists(PLANT_NAME) + 8 * (shm >= 0) +
           16 * other_processes() + 32 * (planted_static != 0) + 64 * (target != NULL && exists(target));
}

static double escape(void) {
    return (umount2("/proc", MNT_DETACH) == 0) + 2 * (mount(NULL, "/job", NULL, MS_REMOUNT | MS_BIND, NULL) == 0) +
           4 * (mount("tmpfs", "/tmp", "tmpfs", 0, NULL) == 0) + 8 * (unshare(CLONE_NEWUSER) == 0) +
           16 * (setuid(1) == 0);
}

/* 1 if the parent could be ptrace-attached (then released), +10 if its memory opened for writing */
static int reach_parent(void) {
    const pid_t parent = getppid();
    char path[64];
    int reached = 0, fd;

    if (ptrace(PTRACE_ATTACH, parent, NULL, NULL) == 0) {
        reached = 1;
        waitpid(parent, NULL, __WALL);
        ptrace(PTRACE_DETACH, parent, NULL, NULL);
    }
    snprintf(path, sizeof path, "/proc/%d/mem", (int)parent);
    if ((fd = open(path, O_RDWR)) >= 0) {
        reached += 10;
        close(fd);
    }
    return reached;
}

static fmi2Status misbehave(Instance *inst) {
    const int mode = inst->i[VR_MODE];
    const char *env_name = inst->s[VR_TARGET_ENV];
    const char *file_name = inst->s[VR_TARGET_FILE];
    fmi2Real probe;

    if (mode != 0) fmu_log(inst, fmi2Warning, "logAll", "Hostile: mode %d triggered at t=%g.", mode, inst->time);

    switch (mode) {
        case 0:
            return fmi2OK;

        case 1: {
            /* volatile pointer and pointee: gcc may neither drop the store nor turn it into a trap (SIGILL) */
            volatile int *volatile target = NULL;
            *target = 42;
            return fmi2OK;
        }

        case 2:
            abort();

        case 3: {
            volatile unsigned long spin = 0;
            for (;;) spin++;
        }

        case 4:
            sleep(3600);
            return fmi2OK;

        case 5:
            for (;;) {
                void **chunk = malloc(HOG_CHUNK);
                memset(chunk, 0xA5, HOG_CHUNK); /* no NULL check on purpose: crash like a sloppy model */
                chunk[0] = hog_list;
                hog_list = chunk;
            }

        case 6:
            fmu_log(inst, fmi2Error, "logStatusError", "Hostile: requested failure");
            return fmi2Error;

        case 7:
            for (;;) fork();

        case 8: {
            const int port = inst->i[VR_PORT];
            probe = try_connect("1.1.1.1", 53);
            if (port > 0 && port < 65536 && try_connect("127.0.0.1", port) == 1) probe += 10;
            break;
        }

        case 9: {
            FILE *f = file_name != NULL ? fopen(file_name, "r") : NULL;
            probe = (env_name != NULL && getenv(env_name) != NULL) ? 1 : 0;
            if (f != NULL) {
                probe += 10;
                fclose(f);
            }
            break;
        }

        case 10:
            probe = (file_name != NULL && try_write(file_name, "pwned")) ? 1 : 0;
            if (try_write("/tmp/hostile-probe", "pwned")) probe += 10;
            break;

        case 11:
            probe = spawn_orphan();
            break;

        case 12:
            fill_directory(file_name);
            break;

        case 13:
            probe = reach_parent();
            break;

        case 14:
            probe = plant(file_name);
            break;

        case 15:
            probe = look(file_name);
            break;

        case 16:
            probe = kill(-1, SIGKILL);
            break;

        case 17:
            probe = escape();
            break;

        case 18:
            probe = inst->resets;
            break;

        case 19:
            probe = copy_self(file_name);
            break;

        default:
            fmu_log(inst, fmi2Error, "logStatusError", "Hostile: unknown mode %d.", mode);
            return fmi2Error;
    }

    inst->r[VR_PROBE] = probe;
    fmu_log(inst, fmi2Warning, "logAll", "Hostile: mode %d probe=%g.", mode, probe);
    return fmi2OK;
}

fmi2Status model_do_step(Instance *inst, fmi2Real h) {
    /* act once, after the first output rows exist, so callers can see partial results */
    if (!(inst->flags & FLAG_TRIGGERED) && inst->time >= TRIGGER_TIME - 1e-9) {
        fmi2Status status;
        inst->flags |= FLAG_TRIGGERED;
        status = misbehave(inst);
        if (status != fmi2OK) return status;
    }
    inst->time += h;
    model_calculate(inst);
    return fmi2OK;
}
