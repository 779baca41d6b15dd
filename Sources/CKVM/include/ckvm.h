/* The parts of <linux/kvm.h> Swift cannot import: KVM ioctl request numbers are built
 * with _IO/_IOW macros, so they are exposed here as constants, and the variable-length
 * KVM structs get fixed-size wrappers. Nothing else lives here. */
#ifndef CKVM_H
#define CKVM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/mman.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned int CKVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;
static const unsigned int CKVM_IOEVENTFD_FLAG_PIO = KVM_IOEVENTFD_FLAG_PIO;
static const unsigned int CKVM_IOEVENTFD_FLAG_DEASSIGN = KVM_IOEVENTFD_FLAG_DEASSIGN;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_INTERRUPT = KVM_INTERRUPT;
static const unsigned long CKVM_NMI = KVM_NMI;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned int CKVM_VCPUEVENT_VALID_NMI_PENDING = KVM_VCPUEVENT_VALID_NMI_PENDING;
static const unsigned int CKVM_VCPUEVENT_VALID_SHADOW = KVM_VCPUEVENT_VALID_SHADOW;

/* KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2 take a header followed by entries. */
#define CKVM_MAX_CPUID_ENTRIES 128
struct ckvm_cpuid {
    struct kvm_cpuid2 header;
    struct kvm_cpuid_entry2 entries[CKVM_MAX_CPUID_ENTRIES];
};
/* KVM_GET_MSRS / KVM_SET_MSRS and KVM_GET_MSR_INDEX_LIST take a header followed by entries. */
#define CKVM_MAX_MSRS 32
struct ckvm_msrs {
    struct kvm_msrs header;
    struct kvm_msr_entry entries[CKVM_MAX_MSRS];
};
#define CKVM_MAX_MSR_INDICES 1024
struct ckvm_msr_list {
    struct kvm_msr_list header;
    __u32 indices[CKVM_MAX_MSR_INDICES];
};
/* Confines the calling thread (a vCPU thread, just before its run loop) with a seccomp
 * filter: only the system calls the run loop and device calls need (KVM ioctls, futexes,
 * signals, time, memory, I/O on open descriptors, thread exit). Any other call, by the
 * VMkernel or a plugin's handler on that thread, writes a line naming it to stderr and
 * kills the process with SIGSYS. Returns 0 or -errno. */
int ckvm_confine_vcpu_thread(void);

#endif
