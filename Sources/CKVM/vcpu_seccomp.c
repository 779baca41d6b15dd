/* The seccomp filter of vCPU threads (see ckvm.h). prctl and the BPF macros are C-only
 * (variadic, macros), hence a C function the backend calls. */
#define _GNU_SOURCE
#include "ckvm.h"
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

/* SIGSYS from the filter: name the call, then die of SIGSYS (write and raise are allowed). */
static void forbidden(int sig, siginfo_t *info, void *context) {
    (void)context;
    char msg[160] = "hvhost: seccomp: a vCPU thread (or a device plugin called on it) made system call ";
    size_t n = strlen(msg);
    int nr = info->si_syscall;
    char digits[12];
    int d = 0;
    if (nr < 0) nr = 0;
    do { digits[d++] = (char)('0' + nr % 10); nr /= 10; } while (nr > 0 && d < 11);
    while (d > 0 && n < sizeof msg - 1) msg[n++] = digits[--d];
    const char *tail = ", which vCPU threads may not make; the host is stopped\n";
    for (size_t i = 0; tail[i] && n < sizeof msg - 1; i++) msg[n++] = tail[i];
    ssize_t w = write(2, msg, n);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

int ckvm_confine_vcpu_thread(void) {
    static int handler_installed;
    if (!handler_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = forbidden;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSYS, &sa, NULL) != 0) return -errno;
        handler_installed = 1;
    }
    struct sock_filter filter[] = {
        /* x86-64 only (not x32, not i386 through int 0x80). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        /* The run loop: KVM ioctls, the vCPU's kicks and waits, time. */
        ALLOW(SYS_ioctl), ALLOW(SYS_futex), ALLOW(SYS_sched_yield), ALLOW(SYS_nanosleep),
        ALLOW(SYS_clock_nanosleep), ALLOW(SYS_clock_gettime), ALLOW(SYS_clock_getres), ALLOW(SYS_gettimeofday),
        ALLOW(SYS_rt_sigreturn), ALLOW(SYS_rt_sigprocmask), ALLOW(SYS_rt_sigaction), ALLOW(SYS_sigaltstack),
        ALLOW(SYS_tgkill), ALLOW(SYS_tkill), ALLOW(SYS_getpid), ALLOW(SYS_gettid), ALLOW(SYS_getuid),
        ALLOW(SYS_geteuid), ALLOW(SYS_getgid), ALLOW(SYS_getegid),
        ALLOW(SYS_sched_getaffinity), ALLOW(SYS_sched_setaffinity), ALLOW(SYS_getrusage), ALLOW(SYS_times),
        /* Memory (malloc, thread stacks). */
        ALLOW(SYS_mmap), ALLOW(SYS_munmap), ALLOW(SYS_mprotect), ALLOW(SYS_mremap), ALLOW(SYS_madvise),
        ALLOW(SYS_brk), ALLOW(SYS_membarrier), ALLOW(SYS_getrandom),
        /* I/O on descriptors the host opened: serial sinks, eventfds, sockets, logs. */
        ALLOW(SYS_read), ALLOW(SYS_write), ALLOW(SYS_readv), ALLOW(SYS_writev), ALLOW(SYS_pread64),
        ALLOW(SYS_pwrite64), ALLOW(SYS_lseek), ALLOW(SYS_fstat), ALLOW(SYS_newfstatat), ALLOW(SYS_statx),
        ALLOW(SYS_fcntl), ALLOW(SYS_close), ALLOW(SYS_fsync), ALLOW(SYS_fdatasync), ALLOW(SYS_poll),
        ALLOW(SYS_ppoll), ALLOW(SYS_epoll_wait), ALLOW(SYS_epoll_pwait), ALLOW(SYS_epoll_ctl),
        ALLOW(SYS_sendto), ALLOW(SYS_sendmsg), ALLOW(SYS_recvfrom), ALLOW(SYS_recvmsg), ALLOW(SYS_shutdown),
        /* hvhost --user: glibc applies setuid/setgid to every thread of the process. */
        ALLOW(SYS_setresuid), ALLOW(SYS_setresgid), ALLOW(SYS_setgroups), ALLOW(SYS_setuid), ALLOW(SYS_setgid),
        /* Threads end; a thread a device starts (clone with CLONE_THREAD) inherits the filter. */
        ALLOW(SYS_exit), ALLOW(SYS_exit_group), ALLOW(SYS_set_robust_list), ALLOW(SYS_rseq),
        /* prctl only to name a thread (pthread_setname_np on itself). */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_NAME, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),      /* glibc falls back to clone */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* Everything else: exec, fork, open, ptrace, mounts, modules, privileges... */
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    struct sock_fprog prog = { (unsigned short)(sizeof filter / sizeof filter[0]), filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return -errno;
    return 0;
}
