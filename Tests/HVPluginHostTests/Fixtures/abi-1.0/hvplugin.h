/*
 * hvplugin.h — the hypervisor plugin ABI, version 1.0, FROZEN: a copy kept by the tests so
 * that a plugin built against 1.0 is proven to load and run on every later host.
 *
 * This header is the whole contract between the VMkernel ("host") and a plugin
 * (a shared object loaded with dlopen). It is C99 and self-contained: a plugin is
 * built with nothing but this file, e.g.
 *
 *     cc -shared -fPIC -I Sources/PluginABI/include -o libmydev.so mydev.c
 *
 * Stability rules
 *  - Every struct passed across the boundary begins with `struct_size` (and, for
 *    top-level descriptors, `abi_version`). Structs and function tables only ever
 *    grow at the end; a reader checks `struct_size` before touching a field added
 *    in a later minor version. Nothing is ever inserted in the middle or removed.
 *  - A new capability is a new factory id ("hv.device/2"), never a changed struct.
 *  - The major version changes only when an existing layout must change; the host
 *    refuses a plugin whose major version differs from its own.
 *  - Results are 0 or positive on success and negative errno values on failure
 *    (HV_EINVAL, ...). The host turns them into messages naming the plugin.
 *  - Handles are opaque. No allocator ownership crosses the boundary except where a
 *    function says so; strings passed to a plugin are valid only for the call unless
 *    the function says otherwise.
 *  - Optional operations may be NULL; the host documents its default for each.
 *
 * Thread contract tags used below
 *  [load]      called once from the thread that loads the plugin, before any other call.
 *  [control]   called from the host's control thread (VM creation, power, save/restore),
 *              never concurrently with another call into the same instance.
 *  [device]    called with the instance's device lock held: at most one [device] or
 *              [control] call runs at a time for an instance, from any host thread
 *              (vCPU threads, I/O threads, timer threads). A device model that sets
 *              HV_DEVICE_THREAD_SAFE is called without that lock and serialises itself.
 *  [any]       a host service callable from any thread, including from inside a
 *              [device] call on the same instance (no host lock is held that it needs).
 *  [sched]     called with the scheduler pool's lock held (see the scheduler section).
 */
#ifndef HVPLUGIN_H
#define HVPLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions and results                                                      */
/* ------------------------------------------------------------------------ */

#define HV_ABI_VERSION_MAJOR 1u
#define HV_ABI_VERSION_MINOR 0u
/* abi_version fields hold (major << 16) | minor. */
#define HV_ABI_VERSION ((HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR)
#define HV_ABI_MAJOR(v) ((uint32_t)(v) >> 16)
#define HV_ABI_MINOR(v) ((uint32_t)(v) & 0xffffu)

/* Negative errno-style results (values match Linux errno). */
#define HV_OK       0
#define HV_EPERM   (-1)
#define HV_ENOENT  (-2)
#define HV_EIO     (-5)
#define HV_EAGAIN  (-11)
#define HV_ENOMEM  (-12)
#define HV_EFAULT  (-14)
#define HV_EBUSY   (-16)
#define HV_EEXIST  (-17)
#define HV_EINVAL  (-22)
#define HV_ENOSPC  (-28)
#define HV_ERANGE  (-34)
#define HV_ENOSYS  (-38)
#define HV_ENOTSUP (-95)

/* Log levels for hv_host_services.log. */
#define HV_LOG_ERROR 0
#define HV_LOG_WARN  1
#define HV_LOG_INFO  2
#define HV_LOG_DEBUG 3

/* ------------------------------------------------------------------------ */
/* Entry point                                                               */
/* ------------------------------------------------------------------------ */

/* Factory ids a plugin may answer in get_factory(). */
#define HV_FACTORY_DEVICE       "hv.device/1"        /* const hv_device_factory *   */
#define HV_FACTORY_SCHED_POLICY "hv.sched-policy/1"  /* const hv_sched_factory *    */
#define HV_FACTORY_TEAMING      "hv.teaming-policy/1"/* const hv_teaming_factory *  */

typedef struct hv_plugin_entry {
    uint32_t struct_size;        /* sizeof(hv_plugin_entry) as the plugin was built */
    uint32_t abi_version;        /* HV_ABI_VERSION the plugin was built against */
    const char *id;              /* unique, reverse-DNS style: "org.example.edu" */
    const char *name;            /* human-readable name */
    const char *version;         /* the plugin's own version, e.g. "1.2.0" */
    const char *vendor;          /* may be NULL */

    /* [load] Optional. Called once after validation, before get_factory().
     * A negative result unloads the plugin and is reported. */
    int (*init)(void);
    /* [load] Optional. Called once before dlclose, after every instance is destroyed. */
    void (*deinit)(void);

    /* [load] Returns the factory for `factory_id` or NULL if the plugin has none.
     * The returned pointer must stay valid until deinit. Mandatory. */
    const void *(*get_factory)(const char *factory_id);

    /* NULL-terminated list of the factory ids get_factory() answers, so the host can
     * list a plugin without guessing. Mandatory, at least one id. */
    const char *const *factory_ids;
} hv_plugin_entry;

/* The one symbol the host looks up with dlsym. */
#define HV_PLUGIN_ENTRY_SYMBOL "hv_plugin_entry_v1"
typedef const hv_plugin_entry *(*hv_plugin_entry_fn)(void);

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

typedef struct hv_host hv_host;               /* one per device instance, host-owned */
typedef struct hv_device hv_device;           /* the plugin's instance, plugin-owned */
typedef struct hv_timer hv_timer;             /* host-owned timer */
typedef struct hv_state_writer hv_state_writer;
typedef struct hv_state_reader hv_state_reader;
typedef struct hv_net_port hv_net_port;       /* host-owned virtual-switch port */
typedef struct hv_disk hv_disk;               /* host-owned virtual disk */

/* ------------------------------------------------------------------------ */
/* PCI identity and BARs                                                     */
/* ------------------------------------------------------------------------ */

typedef struct hv_pci_identity {
    uint32_t struct_size;
    uint16_t vendor_id;
    uint16_t device_id;
    uint16_t subsystem_vendor_id;
    uint16_t subsystem_id;
    uint32_t class_code;         /* 24 bits: class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    uint8_t interrupt_pin;       /* 0 = none, 1..4 = INTA#..INTD# */
    uint8_t reserved[2];
} hv_pci_identity;

#define HV_BAR_IO     1u   /* port I/O, size 4..256 bytes, power of two */
#define HV_BAR_MMIO32 2u   /* 32-bit memory, size >= 16, power of two */
#define HV_BAR_MMIO64 3u   /* 64-bit memory; occupies this BAR index and the next */

#define HV_BAR_PREFETCHABLE 0x1u

/*
 * Access handlers for a BAR. `offset` is relative to the BAR base, `size` is 1, 2,
 * 4 or 8. Accesses never straddle the end of the BAR (the host splits or drops them).
 * [device] Called on the vCPU thread that made the access.
 * A read handler left NULL reads as all ones; a write handler left NULL ignores writes.
 */
typedef uint64_t (*hv_bar_read_fn)(hv_device *dev, uint32_t bar, uint64_t offset, uint32_t size);
typedef void (*hv_bar_write_fn)(hv_device *dev, uint32_t bar, uint64_t offset, uint32_t size,
                                uint64_t value);

typedef struct hv_bar_desc {
    uint32_t struct_size;
    uint32_t index;              /* 0..5 */
    uint32_t kind;               /* HV_BAR_IO / HV_BAR_MMIO32 / HV_BAR_MMIO64 */
    uint32_t flags;              /* HV_BAR_PREFETCHABLE */
    uint64_t size;               /* bytes, power of two */
    hv_bar_read_fn read;
    hv_bar_write_fn write;
} hv_bar_desc;

/* ------------------------------------------------------------------------ */
/* Saved state: named, typed fields in versioned sections                    */
/* ------------------------------------------------------------------------ */

#define HV_STATE_U8     1u
#define HV_STATE_U16    2u
#define HV_STATE_U32    3u
#define HV_STATE_U64    4u
#define HV_STATE_BYTES  5u

/* ------------------------------------------------------------------------ */
/* Network backend: a port on a VMkernel virtual switch                      */
/* ------------------------------------------------------------------------ */

/* What a NIC plugin gives the host when attaching; copied by net_attach. The device
 * is not called through it after its destroy op begins (the port is detached first). */
typedef struct hv_net_client {
    uint32_t struct_size;
    uint8_t mac[6];              /* the NIC's address (from config or generated) */
    uint8_t reserved[2];
    /* [any] A frame for the guest. `frame` is valid only during the call. Return
     * HV_OK when taken, HV_EAGAIN when the receive ring is full (the host drops the
     * frame and counts it). Called without the device lock: the plugin takes its own
     * care, or sets HV_DEVICE_THREAD_SAFE. Mandatory. */
    int (*receive)(hv_device *dev, const void *frame, size_t len);
    /* [any] Optional. The port's link went up (1) or down (0). */
    void (*link_changed)(hv_device *dev, int up);
} hv_net_client;

/* ------------------------------------------------------------------------ */
/* Disk backend: a VMkernel virtual disk (modes, redo logs, shares applied)   */
/* ------------------------------------------------------------------------ */

typedef struct hv_disk_info {
    uint32_t struct_size;
    uint32_t sector_size;        /* bytes, 512 */
    uint64_t sectors;            /* capacity */
    uint32_t read_only;          /* 1 when writes fail with HV_EPERM */
    uint32_t reserved;
} hv_disk_info;

#define HV_DISK_READ  1u
#define HV_DISK_WRITE 2u
#define HV_DISK_FLUSH 3u

/* A request. Buffers are guest-physical segments; the host reads/writes guest
 * memory itself (and marks written pages dirty). */
typedef struct hv_disk_segment {
    uint64_t gpa;
    uint32_t len;                /* bytes; the segments of a request sum to a multiple of 512 */
    uint32_t reserved;
} hv_disk_segment;

typedef struct hv_disk_request {
    uint32_t struct_size;
    uint32_t op;                 /* HV_DISK_READ / WRITE / FLUSH */
    uint64_t sector;
    const hv_disk_segment *segments;  /* copied by the host before submit returns */
    uint32_t segment_count;
    uint32_t reserved;
    uint64_t tag;                /* returned unchanged in the completion */
    /* [any] Called once per accepted request, on a host I/O thread, without the
     * device lock held. result = bytes transferred, or a negative HV_E*. */
    void (*complete)(hv_device *dev, uint64_t tag, int64_t result);
} hv_disk_request;

/* ------------------------------------------------------------------------ */
/* Host services: everything a device instance may ask of the VMkernel       */
/* ------------------------------------------------------------------------ */

typedef struct hv_host_services {
    uint32_t struct_size;
    uint32_t abi_version;

    /* --- logging and configuration --------------------------------------- */

    /* [any] A message tagged with the VM and device names. `msg` is copied. */
    void (*log)(hv_host *host, int level, const char *msg);
    /* [any] The value of the device's own .vmx key, given without the device's
     * prefix: for device "ethernet0", key "address" reads `ethernet0.address`; a key
     * starting with ':' joins without a dot (":1.fileName" on scsi0 reads
     * `scsi0:1.fileName`). Keys are case-insensitive. Returns NULL when absent. For
     * a NIC the host always answers "generatedAddress" (a stable 00:50:56 address
     * derived from the VM and device) unless the config sets a static "address".
     * The string stays valid until the instance is destroyed. */
    const char *(*config_get)(hv_host *host, const char *key);

    /* --- PCI ------------------------------------------------------------- */

    /* [control] During create() only. Sets the function's identity. Mandatory
     * for PCI devices before any BAR is added. */
    int (*pci_set_identity)(hv_host *host, const hv_pci_identity *id);
    /* [control] During create() only. Declares a BAR. HV_EINVAL for a bad size,
     * kind or index, HV_EEXIST for an index already used. The host assigns the
     * address (acting as firmware) and maps/unmaps it as the guest programs it. */
    int (*pci_add_bar)(hv_host *host, const hv_bar_desc *bar);
    /* [control] During create() only. Adds an MSI capability with `vectors`
     * (1, 2, 4, 8, 16 or 32) vectors, 64-bit address, per-vector masking. */
    int (*pci_add_msi)(hv_host *host, uint32_t vectors);
    /* [any] The guest-programmed base address of a BAR, 0 while unmapped. */
    uint64_t (*pci_bar_address)(hv_host *host, uint32_t bar);

    /* --- interrupts -------------------------------------------------------- */

    /* [any] Drives the function's INTx pin (level-triggered, shared with other
     * functions on the same line). level: 1 asserted, 0 deasserted. Ignored while
     * the guest has set Interrupt Disable in the command register (but remembered). */
    void (*irq_set_level)(hv_host *host, int level);
    /* [any] Sends MSI vector `vector`. HV_ENOENT when MSI is not enabled by the
     * guest: the intended pattern is to try MSI first and fall back to INTx on
     * HV_ENOENT. HV_EAGAIN when the vector is
     * masked (the pending bit is set and the message is sent on unmask),
     * HV_ERANGE for a vector beyond what the guest enabled. */
    int (*msi_notify)(hv_host *host, uint32_t vector);

    /* --- guest memory -------------------------------------------------------- */

    /* [any] Copy between guest-physical memory and a host buffer. HV_EFAULT if any
     * byte is outside guest RAM (nothing is copied then). Writes mark pages dirty. */
    int (*mem_read)(hv_host *host, uint64_t gpa, void *buf, size_t len);
    int (*mem_write)(hv_host *host, uint64_t gpa, const void *buf, size_t len);
    /* [any] A host pointer to `len` bytes of guest RAM at `gpa`, or NULL when the
     * range is not entirely RAM. With `writable` the range is marked dirty now; a
     * device that keeps writing through a mapping calls it again (or mem_write) so
     * that migration sees the writes. The pointer stays valid until the instance is
     * destroyed; guest memory is shared with the guest, so re-read guest-owned
     * fields once and validate the copy. */
    void *(*mem_map)(hv_host *host, uint64_t gpa, size_t len, int writable);

    /* --- time -------------------------------------------------------------- */

    /* [any] The VM's clock in nanoseconds. Monotonic; stops while the VM is paused. */
    uint64_t (*clock_ns)(hv_host *host);
    /* [control] Creates a timer whose callback runs [device] on a host timer thread
     * (for an HV_DEVICE_THREAD_SAFE model: with no host lock held). NULL on failure.
     * Timers are cancelled before the instance's destroy op and freed with it. */
    hv_timer *(*timer_create)(hv_host *host, void (*callback)(hv_device *dev, void *opaque),
                              void *opaque);
    /* [any] (Re)arms the timer for an absolute VM-clock deadline; a deadline in the
     * past fires as soon as possible. */
    void (*timer_arm)(hv_host *host, hv_timer *timer, uint64_t deadline_ns);
    /* [any] Disarms. Called from a [device] or [control] op of an ordinary model, the
     * callback will not run until armed again (it needs the device lock the caller
     * holds). A thread-safe model's callback that already started may still finish
     * after this returns; such a model checks its own state in the callback. */
    void (*timer_cancel)(hv_host *host, hv_timer *timer);

    /* --- saved state (save_state / load_state only) ------------------------- */

    /* [control] Writes one named field of `type` (HV_STATE_*). For HV_STATE_BYTES
     * `len` is the byte count; for the integer types `len` must equal their size. */
    int (*state_put)(hv_state_writer *w, const char *name, uint32_t type,
                     const void *data, size_t len);
    /* [control] Reads a field written by state_put. HV_ENOENT when the saved state
     * lacks it (a newer plugin loading an older state keeps its default),
     * HV_EINVAL on a type or length mismatch. */
    int (*state_get)(hv_state_reader *r, const char *name, uint32_t type,
                     void *data, size_t len);

    /* --- network backend ---------------------------------------------------- */

    /* [control] Plugs the device into the virtual switch its config names
     * (`<prefix>.networkName`, default "VM Network"; a name the host has not seen
     * yet gets a new internal-only switch). One port per instance: HV_EEXIST for a
     * second; HV_EBUSY when another port on this host already has client->mac.
     * The port lives until the instance is destroyed. */
    int (*net_attach)(hv_host *host, const hv_net_client *client, hv_net_port **port);
    /* [any] Sends one Ethernet frame (14..65535 bytes, without FCS). Delivery is
     * synchronous: the receiving NICs' receive callbacks run on the calling thread
     * before this returns, so never call it while holding a lock your own receive
     * callback takes (queue frames and send after unlocking). The frame is
     * copied before return. HV_EINVAL for a bad length, HV_EAGAIN when the link is
     * down (the frame is dropped and counted). */
    int (*net_send)(hv_net_port *port, const void *frame, size_t len);
    /* [any] 1 when the port's link is up. */
    int (*net_link_up)(hv_net_port *port);

    /* --- disk backend -------------------------------------------------------- */

    /* [control] Opens the virtual disk of `<prefix>:<unit>.fileName` (e.g. scsi0:1).
     * HV_ENOENT when that unit is not present. Lives until the instance is destroyed. */
    int (*disk_open)(hv_host *host, uint32_t unit, hv_disk **disk);
    /* [any] Capacity and flags. */
    int (*disk_info)(hv_disk *disk, hv_disk_info *info);
    /* [any] Queues a request; completion arrives through req->complete. Returns
     * HV_OK when queued, HV_EINVAL for a malformed request (bad op, unaligned or
     * out-of-range sectors, a segment outside guest RAM) — no completion then. */
    int (*disk_submit)(hv_disk *disk, const hv_disk_request *req);

    /* --- PCI, continued ------------------------------------------------------ */

    /* [any] The guest's PCI command register (bit 0 I/O space, bit 1 memory space,
     * bit 2 bus master, bit 10 interrupt disable). The host does not gate mem_read/
     * mem_write on bus master: a device that models it checks bit 2 before DMA. */
    uint16_t (*pci_command)(hv_host *host);
} hv_host_services;

/* ------------------------------------------------------------------------ */
/* Device factory                                                           */
/* ------------------------------------------------------------------------ */

/* Operations on an instance. Only destroy is mandatory. */
typedef struct hv_device_ops {
    uint32_t struct_size;
    /* [control] After every device of the VM is created and BARs are assigned,
     * before the first vCPU runs. Optional. */
    int (*realize)(hv_device *dev);
    /* [device] Power-on or guest-visible reset: return to the hardware reset state. */
    void (*reset)(hv_device *dev);
    /* [control] VM paused / resumed (e.g. before save). Optional; timers and the
     * network port are quiet while paused. */
    void (*pause)(hv_device *dev);
    void (*resume)(hv_device *dev);
    /* [control] Writes the device's state through host->state_put. The host stores
     * it as a section named after the model, with the model's `state_version`.
     * PCI configuration space (BARs, command, MSI) is saved and restored by the host;
     * the device restores its own INTx level in load_state (irq_set_level) from its
     * registers. Optional; a device without it cannot be migrated and the host says so. */
    int (*save_state)(hv_device *dev, hv_state_writer *w);
    /* [control] Reads state written by save_state of `version` (<= its own). */
    int (*load_state)(hv_device *dev, hv_state_reader *r, uint32_t version);
    /* [control] Frees the instance. Timers and ports are torn down by the host after
     * this returns. Mandatory. */
    void (*destroy)(hv_device *dev);
} hv_device_ops;

/* Device kinds: which .vmx keys select the model. */
#define HV_DEVICE_KIND_NIC     1u  /* ethernetN.virtualDev */
#define HV_DEVICE_KIND_SCSI    2u  /* scsiN.virtualDev */
#define HV_DEVICE_KIND_DISPLAY 3u  /* svga.virtualDev (default "svga") when svga.present */
#define HV_DEVICE_KIND_OTHER   4u  /* hv.deviceN.model */

/* Model flags. */
#define HV_DEVICE_THREAD_SAFE 0x1u /* the host calls [device] ops without its lock */

typedef struct hv_device_model {
    uint32_t struct_size;
    uint32_t kind;               /* HV_DEVICE_KIND_* */
    const char *name;            /* the .vmx name, e.g. "vlance"; unique per host */
    const char *description;
    uint32_t flags;              /* HV_DEVICE_* */
    uint32_t state_version;      /* version of the saved-state section */
    /*
     * [control] Creates an instance. The plugin keeps `services` and `host` for the
     * instance's lifetime and, inside create(), declares its PCI identity and BARs
     * and may attach backends and create timers. Returns HV_OK and sets *out, or a
     * negative HV_E* (the host then releases everything it allocated).
     */
    int (*create)(const hv_host_services *services, hv_host *host, hv_device **out);
    const hv_device_ops *ops;
} hv_device_model;

typedef struct hv_device_factory {
    uint32_t struct_size;
    uint32_t abi_version;
    uint32_t model_count;
    uint32_t reserved;
    const hv_device_model *const *models;
} hv_device_factory;

/* ------------------------------------------------------------------------ */
/* Scheduler policy factory (a pool of pCPUs runs one policy)               */
/* ------------------------------------------------------------------------ */

typedef struct hv_sched_policy hv_sched_policy;   /* the policy's per-pool instance */

/*
 * Per-vCPU parameters, from sched.cpu.* of its VM.
 *
 * Topology. A pool's pCPUs are its slots 0..pcpu_count-1: the `pcpu` argument of
 * pick_next and bit i of `affinity`. Slots 2k and 2k+1 are the two hyperthreads of one
 * core (with an odd count the last slot has no sibling); that pairing is all a policy
 * knows of the topology. htsharing: 0 any; 1 internal, only a vCPU of the same `vm` may
 * run on the sibling slot meanwhile; 2 none, the sibling slot idles meanwhile.
 */
typedef struct hv_sched_params {
    uint32_t struct_size;
    uint32_t shares;             /* proportional weight, > 0 */
    uint32_t min_pct;            /* reservation, percent of one pCPU (0..100) */
    uint32_t max_pct;            /* limit, percent of one pCPU (1..100; 100 = none) */
    uint32_t htsharing;          /* 0 any, 1 internal, 2 none (see Topology above) */
    uint64_t affinity;           /* bit i = pCPU slot i allowed; 0 = any */
} hv_sched_params;

typedef struct hv_sched_pick {
    uint32_t struct_size;
    int32_t vcpu;                /* vCPU id to run, or -1 to idle */
    uint64_t slice_ns;           /* how long before the host asks again */
} hv_sched_pick;

/*
 * [sched] Every op runs with the pool lock held, from whichever host thread made the
 * scheduling decision; ops must not block. vCPU ids are host-assigned, unique in the
 * pool; `vm` groups sibling vCPUs of one VM. Times are pool-clock nanoseconds.
 * The host validates every pick (runnable, in this pool, allowed on the pCPU) and
 * replaces a policy that misbehaves or starves a runnable vCPU past its watchdog
 * with the built-in fallback.
 *
 * Call sequence (the VMkernel's pools and `hvhost sched-sim` both follow it):
 *  - vcpu_add is followed at once by wake: a vCPU added is not runnable before.
 *  - The vCPU pick_next returns runs on that pCPU, and nowhere else, until the host next
 *    calls pick_next for that pCPU or block/yield/vcpu_remove for that vCPU. It must
 *    not be running on another pCPU then. Before asking again for a pCPU whose slice
 *    ended the host calls account(vcpu, ran_ns) with the CPU time used; on HLT,
 *    account then block; on yield, account then yield.
 *  - The host asks every free pCPU after any event (a slice ending, a block, a wake, a
 *    vCPU joining or leaving), one pCPU after the other with about the same now_ns; a
 *    vCPU whose slice has just ended still counts as running on its pCPU until that
 *    pCPU is asked. A running vCPU is never stopped before its slice ends except by
 *    block/yield/vcpu_remove, or by preempt.
 *  - preempt (optional; appended after v1): after every wake (so also after vcpu_add + wake) and
 *    before any pCPU is asked, the host calls preempt(now_ns) once. It returns a mask of
 *    pCPU slots (bit i = slot i) whose running vCPU should stop now; 0 = none. For each
 *    such slot the host ends the slice as at a slice end: account(vcpu, ran_ns), then
 *    pick_next for that pCPU (on a real pool, once the vCPU has left guest mode, so
 *    after a short delay and not necessarily before other pCPUs are asked). Bits for
 *    idle slots, slots already being preempted and slots >= pcpu_count are ignored.
 *    Without preempt (NULL, or struct_size too small to hold it) the host never
 *    preempts on wake: such a policy uses short slices.
 *  - A slice is 10 us..1 s. An idle pick (-1) with a slice is asked again after it (or
 *    sooner, on an event); with slice 0, on the next event (10 ms while vCPUs wait).
 */
typedef struct hv_sched_ops {
    uint32_t struct_size;
    int (*init)(hv_sched_policy **out, uint32_t pcpu_count);        /* mandatory */
    void (*deinit)(hv_sched_policy *p);                             /* mandatory */
    int (*vcpu_add)(hv_sched_policy *p, int32_t vcpu, int32_t vm, const hv_sched_params *params);
    void (*vcpu_remove)(hv_sched_policy *p, int32_t vcpu);
    void (*wake)(hv_sched_policy *p, int32_t vcpu, uint64_t now_ns);
    void (*block)(hv_sched_policy *p, int32_t vcpu, uint64_t now_ns);
    void (*yield)(hv_sched_policy *p, int32_t vcpu, uint64_t now_ns); /* optional */
    void (*pick_next)(hv_sched_policy *p, uint32_t pcpu, uint64_t now_ns, hv_sched_pick *out);
    void (*account)(hv_sched_policy *p, int32_t vcpu, uint64_t ran_ns);
    int (*set_params)(hv_sched_policy *p, int32_t vcpu, const hv_sched_params *params);
    /* Optional: writes a one-line summary of policy state into buf (NUL-terminated). */
    void (*dump)(hv_sched_policy *p, char *buf, size_t len);
    /* Optional, appended after v1 (the host reads it only when struct_size covers it):
     * [sched] called after every wake; returns the pCPU slots whose running vCPU should
     * be preempted now (bit i = slot i, 0 = none). See "Call sequence" above. */
    uint64_t (*preempt)(hv_sched_policy *p, uint64_t now_ns);
} hv_sched_ops;

/*
 * One scheduler policy a plugin offers. A plugin may offer several (a factory lists
 * them all); each one is selected on its own by name.
 * [load] Read once, when the plugin loads; it and everything it points to must stay
 * valid and unchanged until deinit. The ops run [sched].
 */
typedef struct hv_sched_policy_desc {
    uint32_t struct_size;        /* sizeof(hv_sched_policy_desc) as the plugin was built */
    uint32_t reserved;           /* 0 */
    /* The name a pool config selects: 1..64 bytes of [a-z0-9_-], e.g. "credit".
     * Unique per host: when two plugins offer the same name the first in search
     * order is used and the other is reported; twice in one factory is an error. */
    const char *name;
    const char *description;     /* human-readable, may be NULL */
    /* Mandatory, struct_size >= the v1 size (96 bytes, up to dump); every op is
     * mandatory except yield, dump and preempt. */
    const hv_sched_ops *ops;
} hv_sched_policy_desc;

/* What get_factory(HV_FACTORY_SCHED_POLICY) returns. [load] */
typedef struct hv_sched_factory {
    uint32_t struct_size;
    uint32_t abi_version;
    uint32_t policy_count;       /* 1..64 */
    uint32_t reserved;           /* 0 */
    const hv_sched_policy_desc *const *policies;  /* policy_count non-NULL entries */
} hv_sched_factory;

/* ------------------------------------------------------------------------ */
/* NIC-teaming policy factory (a virtual switch with several uplinks)        */
/* ------------------------------------------------------------------------ */

typedef struct hv_teaming_policy hv_teaming_policy;

typedef struct hv_frame_info {
    uint32_t struct_size;
    uint32_t source_port;        /* virtual port id */
    uint8_t src_mac[6];
    uint8_t dst_mac[6];
    uint16_t vlan;               /* 0 = untagged */
    uint16_t ethertype;
    uint32_t src_ip;             /* IPv4, host byte order; 0 if not IPv4 */
    uint32_t dst_ip;
} hv_frame_info;

/* [control] for add/remove/link, [any] for select (called per frame, must not block). */
typedef struct hv_teaming_ops {
    uint32_t struct_size;
    int (*init)(hv_teaming_policy **out);
    void (*deinit)(hv_teaming_policy *p);
    int (*uplink_add)(hv_teaming_policy *p, uint32_t uplink, uint32_t order);
    void (*uplink_remove)(hv_teaming_policy *p, uint32_t uplink);
    void (*link_changed)(hv_teaming_policy *p, uint32_t uplink, int up);
    /* Returns the uplink id to send on, or -1 to drop. */
    int32_t (*select_uplink)(hv_teaming_policy *p, const hv_frame_info *frame);
    /* Optional: 1 if traffic should return to `uplink` now that it is back up. */
    int (*should_failback)(hv_teaming_policy *p, uint32_t uplink);
} hv_teaming_ops;

/*
 * One NIC-teaming policy a plugin offers. A plugin may offer several (a factory lists
 * them all); each one is selected on its own by name.
 * [load] Read once, when the plugin loads; it and everything it points to must stay
 * valid and unchanged until deinit. The ops run [control] / [any] as hv_teaming_ops says.
 */
typedef struct hv_teaming_policy_desc {
    uint32_t struct_size;        /* sizeof(hv_teaming_policy_desc) as the plugin was built */
    uint32_t reserved;           /* 0 */
    /* The name a switch config selects: 1..64 bytes of [a-z0-9_-], e.g. "failover".
     * Unique per host: when two plugins offer the same name the first in search
     * order is used and the other is reported; twice in one factory is an error. */
    const char *name;
    const char *description;     /* human-readable, may be NULL */
    /* Mandatory, struct_size >= the v1 size; every op is mandatory except should_failback. */
    const hv_teaming_ops *ops;
} hv_teaming_policy_desc;

/* What get_factory(HV_FACTORY_TEAMING) returns. [load] */
typedef struct hv_teaming_factory {
    uint32_t struct_size;
    uint32_t abi_version;
    uint32_t policy_count;       /* 1..64 */
    uint32_t reserved;           /* 0 */
    const hv_teaming_policy_desc *const *policies;  /* policy_count non-NULL entries */
} hv_teaming_factory;

#ifdef __cplusplus
}
#endif
#endif /* HVPLUGIN_H */
