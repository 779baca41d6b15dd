/*
 * hvplugin.h — the hypervisor plugin ABI, version 1.3.
 *
 * This header is the whole contract between the VMkernel ("host") and a plugin
 * (a shared object loaded with dlopen). It is C99 and self-contained: a plugin is
 * built with nothing but this file, e.g.
 *
 *     cc -shared -fPIC -I Sources/PluginABI/include -o libmydev.so mydev.c
 *
 * Versions: one scheme
 *  - HV_ABI_VERSION_MAJOR changes only when an existing layout must change; the host
 *    refuses a plugin whose major version differs from its own.
 *  - HV_ABI_VERSION_MINOR is bumped for every addition, and every addition is listed
 *    in the changelog below with the minor that brought it.
 *  - An addition is one of: a field or op appended to an existing struct (readers
 *    check `struct_size` before touching it); a new host extension, looked up by id
 *    with hv_host_services.get_extension ("hv.<name>/<n>", CLAP's pattern: the
 *    hv_host_services table itself no longer grows); a new plugin kind, which is a
 *    new factory id ("hv.<kind>/<n>"). An extension whose table must change
 *    incompatibly gets a new id ("hv.<name>/<n+1>") and the host keeps serving the old.
 *  - The entry symbol (hv_plugin_entry_v1) names the major version only.
 *
 * Changelog
 *  1.0  Entry, device / scheduler-policy / teaming-policy factories, host services
 *       log .. disk_submit. Appended while still numbered 1.0 (a host reads them only
 *       when struct_size covers them): hv_host_services.pci_command,
 *       hv_sched_ops.preempt.
 *  1.1  hv_host_services.get_extension (host extensions by id);
 *       hv_plugin_entry.init_with_info (the plugin learns its own path);
 *       extension "hv.timer/1" (timer_cancel_wait: cancel and wait out a callback in
 *       flight, so a thread-safe model can free itself).
 *       Extensions "hv.legacy-io/1" (fixed ISA port ranges and memory windows in the
 *       legacy hole), "hv.rom/1" (PCI expansion ROM), "hv.display/1" (a display
 *       surface: mode, framebuffer, damage, cursor), "hv.input/1" (keyboard and
 *       pointer events from the host's consoles).
 *       Extensions "hv.ram-bar/1" (a memory BAR backed by host RAM the guest reaches
 *       without exits, with a dirty-page query), "hv.msix/1" (an MSI-X capability
 *       with its table and PBA in a BAR) and "hv.doorbell/1" (write-only doorbell
 *       registers completed by the host, the device called on a doorbell thread).
 *       Device lifecycle documented in one place (before hv_device_ops); the host now
 *       calls pause, resume, save_state and load_state (suspend/resume).
 *       Network ports are queues: net_send copies the frame into each receiving
 *       port's bounded queue and returns; hv_net_client.receive runs [net-rx] on the
 *       receiving port's own host thread (1.0: [any], on the sender's thread).
 *       Extension "hv.net-queue/1" (send_guest: a frame gathered from guest memory,
 *       copied once into each receiving queue; rx_backpressure / rx_ready: HV_EAGAIN
 *       from receive keeps the frame queued until the NIC has room).
 *  1.2  Extension "hv.scsi/1" (the VMkernel SCSI layer: an HBA hands over CDBs and
 *       guest-memory segments, the host executes them against the unit's virtual disk).
 *       Extension "hv.net-offload/1" (send_offload: a frame with checksum / TCP
 *       segmentation work left to the VMkernel, which segments only for receivers that
 *       did not declare large frames with set_rx_large).
 *       Declared configuration keys and typed commands (hv_config_key, hv_command):
 *       appended to hv_device_model and hv_sched_policy_desc (key_count, command_count,
 *       keys, commands; read only when struct_size covers them). `hvhost validate`
 *       checks .vmx keys against them, the console's `device` and `sched tune` call the
 *       commands through libffi, `hvhost plugin-check` exercises both.
 *       hv_frame_info.src_ip6/dst_ip6 (IPv6 for IP-hash teaming); the host now drives
 *       teaming policies (switch uplinks, see "How the host drives a teaming policy").
 *  1.3  The VMkernel owns the VMware backdoor ports 0x5658-0x565B (hv.legacy-io/1
 *       claims there get HV_EBUSY): its services (balloon, absolute pointer) take
 *       their calls with the vCPU's registers.
 *       hv_sched_ops.set_topology with hv_sched_topology / hv_sched_pcpu (a pool's slots
 *       placed on the host's packages, cores, SMT siblings, NUMA nodes and caches, from
 *       sysfs; replaces the slots-2k/2k+1 pairing for policies that take it).
 *  1.4  hv_display_ext.copy: a rectangle the device copied inside its framebuffer,
 *       which consoles send as a copy (RFB CopyRect) instead of pixels.
 *
 * Stability rules
 *  - Every struct passed across the boundary begins with `struct_size` (and, for
 *    top-level descriptors, `abi_version`). Structs and function tables only ever
 *    grow at the end; a reader checks `struct_size` before touching a field added
 *    in a later minor version. Nothing is ever inserted in the middle or removed.
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
 *  [net-rx]    (1.1) a [device] call made on the receiving port's own host receive
 *              thread (one per port): never on the thread of the device that sent the
 *              frame, one frame at a time, in the order the port queued them.
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
#define HV_ABI_VERSION_MINOR 4u
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
#define HV_EDEADLK (-35)
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

/* What init_with_info() receives. Valid only during the call; copy what you keep. */
typedef struct hv_plugin_load_info {
    uint32_t struct_size;
    uint32_t abi_version;        /* the host's HV_ABI_VERSION */
    const char *plugin_path;     /* absolute path of this shared object */
} hv_plugin_load_info;

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

    /* --- appended in 1.1 --- */

    /* [load] Optional. When set, the host calls it instead of init(), once, after
     * validation and before get_factory(). A negative result unloads the plugin and
     * is reported. */
    int (*init_with_info)(const hv_plugin_load_info *info);
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
    /* [net-rx] A frame for the guest, from the port's queue. `frame` points into the
     * queue and is valid only during the call. Return HV_OK when taken (or filtered
     * out by the NIC); HV_EAGAIN when the receive ring is full: the host drops the
     * frame and counts it (rxDrops), or, once the plugin enabled rx_backpressure
     * ("hv.net-queue/1"), keeps it at the head of the queue and calls receive again
     * only after rx_ready; any other negative result drops the frame and counts it.
     * Runs under the device lock unless the model sets HV_DEVICE_THREAD_SAFE. (Until
     * 1.1 it ran on the sending thread without the device lock; a 1.0 plugin that
     * takes its own lock here still works: no host service waits for the device lock,
     * so the order device lock -> plugin lock cannot be reversed.) Mandatory. */
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
    /* [any] Sends one Ethernet frame (14..65535 bytes, without FCS). The frame is
     * copied into the queue of every port it goes to before this returns (a full
     * queue drops it and counts it in that port's rxDrops); receivers run later on
     * their own [net-rx] threads, never on this one, so it may be called with any
     * lock held, from any [device] call including receive. HV_EINVAL for a bad
     * length, HV_EAGAIN when the link is down (the frame is dropped and counted). */
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

    /* --- appended in 1.1: the last field this table gains ------------------ */

    /* [any] The host extension `id` ("hv.<name>/<n>", e.g. HV_EXT_TIMER), or NULL when
     * this host does not offer it (or not to this device). The table starts with
     * struct_size and stays valid and unchanged for the instance's lifetime. A plugin
     * built against a newer header checks struct_size before using an op appended
     * later. Every new host service since 1.1 is an extension. */
    const void *(*get_extension)(hv_host *host, const char *id);
} hv_host_services;

/* ------------------------------------------------------------------------ */
/* Host extensions (looked up with get_extension)                            */
/* ------------------------------------------------------------------------ */

/* "hv.timer/1" (1.1): timers, continued. */
#define HV_EXT_TIMER "hv.timer/1"

typedef struct hv_timer_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [any] Disarms the timer like timer_cancel and, if its callback is running on
     * another thread, waits until that callback has returned. After it returns the
     * callback does not run until the timer is armed again, so a thread-safe model
     * may free what the callback uses. Called from inside that timer's own callback
     * it disarms without waiting and returns HV_EDEADLK. For an ordinary (locked)
     * model do not call it while another thread may need the device lock the caller
     * holds to finish the callback: from a [device] op the callback cannot be
     * running (it needs that lock), and the call returns at once. */
    int (*timer_cancel_wait)(hv_host *host, hv_timer *timer);
} hv_timer_ext;

/* "hv.legacy-io/1" (1.1): fixed legacy decoding, as ISA devices and VGA have it.
 * A device claims port ranges (e.g. VGA 0x3C0-0x3DF, Bochs DISPI 0x1CE-0x1CF; a 32-bit
 * IN at the first port of a 4-port claim covers all four) and memory
 * windows in the legacy hole 0xA0000-0xFFFFF (e.g. VGA 0xA0000-0xBFFFF). A claimed
 * memory window is not RAM in the guest: the host leaves it out of guest memory
 * (mem_read/mem_write/mem_map of it fail) and every guest access reaches the
 * handlers. Claims are released when the instance is destroyed. Handlers see the
 * access's value only. Since 1.3 the VMkernel owns the VMware backdoor 0x5658-0x565B
 * (its protocol passes the command and answers in the other vCPU registers), so a
 * claim there gets HV_EBUSY. */
#define HV_EXT_LEGACY_IO "hv.legacy-io/1"

#define HV_LEGACY_PORT   1u   /* port I/O space 0x0000-0xFFFF */
#define HV_LEGACY_MEMORY 2u   /* guest-physical memory, inside 0xA0000-0xFFFFF */

/*
 * Access handlers of a claimed region. `addr` is absolute: the port number, or the
 * guest-physical address. `size` is 1, 2 or 4 for ports (string I/O is one call per
 * element), 1, 2, 4 or 8 for memory. Accesses never straddle the end of the region
 * (the part beyond it reads as all ones and is not written). `opaque` is the claim's.
 * [device] Called on the vCPU thread that made the access. A read handler left NULL
 * reads as all ones; a write handler left NULL ignores writes.
 */
typedef uint64_t (*hv_legacy_read_fn)(hv_device *dev, void *opaque, uint64_t addr, uint32_t size);
typedef void (*hv_legacy_write_fn)(hv_device *dev, void *opaque, uint64_t addr, uint32_t size,
                                   uint64_t value);

typedef struct hv_legacy_region {
    uint32_t struct_size;
    uint32_t space;              /* HV_LEGACY_PORT / HV_LEGACY_MEMORY */
    uint64_t base;               /* first port or guest-physical address */
    uint64_t size;               /* bytes (ports); memory: a multiple of 4096, base aligned */
    hv_legacy_read_fn read;
    hv_legacy_write_fn write;
    void *opaque;                /* passed to the handlers */
    const char *name;            /* for logs and conflict messages ("vga-crtc"); may be NULL */
} hv_legacy_region;

typedef struct hv_legacy_io_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only (HV_EPERM after). Claims `region`, which the host
     * copies (the name too). HV_EINVAL for a bad space, size or handler set, for ports
     * beyond 0xFFFF or inside the PCI I/O window 0xC000-0xFFFF (the firmware's, for
     * BARs), and for memory outside 0xA0000-0xFFFFF or not page-aligned.
     * HV_EBUSY when the range overlaps a chipset device, the PCI configuration ports or
     * another claim of this VM; the host logs which region it collides with. */
    int (*claim)(hv_host *host, const hv_legacy_region *region);
} hv_legacy_io_ext;

/* "hv.rom/1" (1.1): a PCI expansion ROM (configuration register 0x30). The ROM's size
 * is its contents rounded up to a power of two, at least 2 KiB, at most 16 MiB; the
 * padding reads as zero. The host sizes, assigns and decodes it like a BAR: the guest
 * sizes it by writing all ones, and it decodes read-only on the MMIO bus while its
 * enable bit (0x30 bit 0) and memory decoding (command bit 1) are both set. The
 * host's firmware-style assignment gives it an address but leaves it disabled, as
 * firmware does until it copies a ROM. Writes to the ROM are ignored. */
#define HV_EXT_ROM "hv.rom/1"

typedef struct hv_rom_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only (HV_EPERM after), after pci_set_identity
     * (HV_EINVAL before); one ROM per function (HV_EEXIST for a second). Reads the
     * whole file at `path` now. A relative path resolves against the directory of the
     * VM's .vmx file, like every path in it; a plugin shipping its own ROM image builds
     * an absolute path from init_with_info's plugin_path. HV_ENOENT when the file does
     * not exist, HV_EIO when it cannot be read, HV_EINVAL when it is empty, not a regular
     * file or larger than 16 MiB; the host logs the file and the reason, and a create()
     * that returns the error fails with that message. */
    int (*load_file)(hv_host *host, const char *path);
    /* [control] The same with `len` bytes the host copies before returning. */
    int (*set_bytes)(hv_host *host, const void *data, size_t len);
} hv_rom_ext;

/* "hv.display/1" (1.1): the VM's display surface, which the host's consoles (VNC, a
 * browser console) read. One device per VM publishes it. The device owns the
 * framebuffer memory (its RAM BAR, its own buffer); the host copies from it when a
 * console asks and never writes it. */
#define HV_EXT_DISPLAY "hv.display/1"

/* Pixel formats, in memory order of a little-endian pixel value. */
#define HV_PIXEL_XRGB8888 1u  /* 32 bpp: bits 23..16 red, 15..8 green, 7..0 blue, 31..24 ignored */
#define HV_PIXEL_RGB888   2u  /* 24 bpp: bytes blue, green, red */
#define HV_PIXEL_RGB565   3u  /* 16 bpp: bits 15..11 red, 10..5 green, 4..0 blue */
#define HV_PIXEL_XRGB1555 4u  /* 16 bpp: bits 14..10 red, 9..5 green, 4..0 blue, 15 ignored */
#define HV_PIXEL_INDEXED8 5u  /* 8 bpp: an index into the palette (set_palette) */

typedef struct hv_display_mode {
    uint32_t struct_size;
    uint32_t width;              /* pixels, 1..8192 */
    uint32_t height;             /* lines, 1..8192 */
    uint32_t bits_per_pixel;     /* 32, 24, 16, 16, 8: what the format takes */
    uint32_t pitch;              /* bytes from one line to the next, >= width * bpp / 8;
                                    pitch * height at most 256 MiB */
    uint32_t format;             /* HV_PIXEL_* */
    /* pitch * height bytes, owned by the device. Valid from set_mode until the next
     * set_mode returns or the instance is destroyed: the host reads it only inside its
     * own copies, and set_mode waits out a copy in progress, so the device may free or
     * reuse the old buffer as soon as set_mode returns. */
    const void *framebuffer;
} hv_display_mode;

typedef struct hv_display_cursor {
    uint32_t struct_size;
    uint32_t width;              /* 1..256 */
    uint32_t height;             /* 1..256 */
    uint32_t hot_x;              /* hotspot, < width */
    uint32_t hot_y;              /* < height */
    uint32_t reserved;           /* 0 */
    /* width * height pixels, rows top to bottom without padding, each 0xAARRGGBB
     * (straight alpha: 0 transparent, 255 opaque). Copied by the host. */
    const uint32_t *pixels;
} hv_display_cursor;

typedef struct hv_display_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only (HV_EPERM after). Makes this device the VM's
     * display; HV_EBUSY when another device of the VM already is. The other ops return
     * HV_EPERM for a device that has not attached. Detached when the instance is
     * destroyed (before its destroy op: the host stops reading the framebuffer). */
    int (*attach)(hv_host *host);
    /* [any] Publishes a new mode and framebuffer (see hv_display_mode), or none with
     * mode == NULL (a blank screen, e.g. while the guest has the device disabled).
     * The whole screen counts as damaged. HV_EINVAL when a field is out of range or
     * bits_per_pixel does not match the format; the previous mode stays then. */
    int (*set_mode)(hv_host *host, const hv_display_mode *mode);
    /* [any] Sets palette entries first..first+count-1 (first + count <= 256) to
     * 0x00RRGGBB values, copied. Used by HV_PIXEL_INDEXED8; damages the whole screen
     * while that format is shown. */
    int (*set_palette)(hv_host *host, uint32_t first, uint32_t count, const uint32_t *xrgb);
    /* [any] The rectangle changed in the framebuffer. Clipped to the mode; an empty
     * rectangle, or one wholly outside, records nothing. HV_OK without a mode. */
    int (*update)(hv_host *host, uint32_t x, uint32_t y, uint32_t width, uint32_t height);
    /* [any] Defines the pointer's image (see hv_display_cursor). HV_EINVAL for a bad
     * size, hotspot or NULL pixels. */
    int (*cursor_define)(hv_host *host, const hv_display_cursor *cursor);
    /* [any] Moves the cursor's hotspot to screen pixel (x, y); -65536..65535 on each
     * axis (partly or wholly off screen is allowed), else HV_EINVAL. */
    int (*cursor_move)(hv_host *host, int32_t x, int32_t y);
    /* [any] Shows (1) or hides (0) the cursor. It starts hidden. */
    int (*cursor_show)(hv_host *host, int visible);
    /* [any] (1.4) The device copied the width x height rectangle at (src_x, src_y) to
     * (dst_x, dst_y) in its framebuffer (a blit, a scroll), already done when called:
     * consoles that can send the copy (RFB CopyRect) do, the others see damage of the
     * destination. Both rectangles must lie inside the mode, else HV_EINVAL and nothing
     * is recorded (report the destination with update instead); HV_OK without a mode.
     * A 1.1-1.3 host's table ends before this field: check struct_size first. */
    int (*copy)(hv_host *host, uint32_t src_x, uint32_t src_y, uint32_t dst_x, uint32_t dst_y,
                uint32_t width, uint32_t height);
} hv_display_ext;

/* "hv.input/1" (1.1): keyboard and pointer events from the host's consoles. Devices
 * attach clients; each event is offered to the attached clients in the order they
 * attached (the VM's device order) until one takes it. */
#define HV_EXT_INPUT "hv.input/1"

/* Pointer event kinds. */
#define HV_POINTER_ABSOLUTE 1u  /* x, y: 0..0xFFFF across the screen (a tablet) */
#define HV_POINTER_RELATIVE 2u  /* x, y: motion in mickeys, -32768..32767 (a mouse) */

/* Buttons held, in hv_pointer_event.buttons. */
#define HV_BUTTON_LEFT   0x01u
#define HV_BUTTON_RIGHT  0x02u
#define HV_BUTTON_MIDDLE 0x04u
#define HV_BUTTON_SIDE   0x08u   /* back */
#define HV_BUTTON_EXTRA  0x10u   /* forward */

typedef struct hv_pointer_event {
    uint32_t struct_size;
    uint32_t kind;               /* HV_POINTER_ABSOLUTE / HV_POINTER_RELATIVE */
    int32_t x;                   /* absolute: 0 left .. 0xFFFF right; relative: dx */
    int32_t y;                   /* absolute: 0 top .. 0xFFFF bottom; relative: dy, + down */
    int32_t wheel;               /* notches, -127..127, positive = away from the user */
    uint32_t buttons;            /* HV_BUTTON_* held after this event */
} hv_pointer_event;

typedef struct hv_input_client {
    uint32_t struct_size;
    uint32_t reserved;
    /* [device] Optional. A key went down (pressed = 1) or up (0). `scancode` is a
     * PC scancode set 1 make code: 0x01..0x7F, 0xE001..0xE07F for E0-prefixed keys
     * (0xE01D right Ctrl, 0xE048 cursor up), or 0xE11D for Pause (a press only).
     * Return HV_OK when taken; any other result (e.g. HV_EAGAIN while the guest has
     * not enabled the device) offers the event to the next client. Called on the
     * host thread that injects the event, never on a vCPU thread of another VM. */
    int (*key)(hv_device *dev, uint32_t scancode, int pressed);
    /* [device] Optional. A pointer event, valid only during the call; the same
     * result rule and thread as key. */
    int (*pointer)(hv_device *dev, const hv_pointer_event *event);
} hv_input_client;

typedef struct hv_input_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only (HV_EPERM after); once per instance (HV_EEXIST).
     * Copies `client`, which has key, pointer or both (HV_EINVAL otherwise). Events
     * stop before the instance's destroy op: the host waits out one in flight. */
    int (*attach)(hv_host *host, const hv_input_client *client);
} hv_input_ext;

/* "hv.ram-bar/1" (1.1): a memory BAR that is host RAM. While the guest has the BAR
 * programmed and memory decoding on, the host maps the RAM at that address as guest
 * memory (a KVM memslot): guest reads and writes go straight to the RAM, with no exit
 * and no handler call. Moving the BAR or turning decoding off unmaps it and maps it
 * again at the new address; the contents stay. Meant for frame buffers and other large
 * shared memory (SVGA VRAM and FIFO). */
#define HV_EXT_RAM_BAR "hv.ram-bar/1"
#define HV_RAM_BAR_PAGE_SIZE 4096u   /* the unit of the dirty bitmap */

typedef struct hv_ram_bar_desc {
    uint32_t struct_size;
    uint32_t index;              /* 0..5 */
    uint32_t kind;               /* HV_BAR_MMIO32 or HV_BAR_MMIO64 */
    uint32_t flags;              /* HV_BAR_PREFETCHABLE */
    uint64_t size;               /* bytes, power of two, >= HV_RAM_BAR_PAGE_SIZE
                                  * (MMIO32: <= 256 MiB, MMIO64: <= 4 GiB) */
} hv_ram_bar_desc;

typedef struct hv_ram_bar_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only. Declares BAR desc->index as RAM of desc->size
     * zero bytes and stores its host address in *host_ptr. The memory is shared with
     * the guest and stays valid until the instance's destroy op has returned; the
     * guest may change any byte at any time, so copy guest-owned fields once and
     * validate the copy. HV_EINVAL for a bad size, kind or index, HV_EEXIST for an
     * index already used, HV_ENOMEM when the memory cannot be allocated. */
    int (*ram_bar_add)(hv_host *host, const hv_ram_bar_desc *desc, void **host_ptr);
    /* [any] The pages of RAM BAR `bar` the guest wrote since the previous call (since
     * ram_bar_add for the first): bit i % 64 of bitmap[i / 64] is page i (offset
     * i * HV_RAM_BAR_PAGE_SIZE). Clears what it reports. `bitmap_words` must cover the
     * BAR: at least (size / HV_RAM_BAR_PAGE_SIZE + 63) / 64. Returns the number of
     * dirty pages, HV_EINVAL when `bar` is not a RAM BAR of this instance, HV_ERANGE
     * for a short bitmap. Not included: the device's own writes through host_ptr.
     * Moving the BAR or switching decoding off marks every page dirty (writes in
     * flight while the host moves the mapping cannot be told apart). */
    int (*ram_bar_dirty)(hv_host *host, uint32_t bar, uint64_t *bitmap, size_t bitmap_words);
} hv_ram_bar_ext;

/* "hv.msix/1" (1.1): an MSI-X capability. The table (16 bytes per vector) and the
 * pending-bit array (one bit per vector, in 64-bit words) live in one of the device's
 * memory BARs at the given offsets; the host decodes those two ranges itself (the
 * rest of the BAR still reaches the BAR's handlers), validates what the guest writes
 * there, and keeps the capability's enable and function-mask bits. A device may offer
 * MSI (pci_add_msi) and MSI-X; while the guest has MSI-X enabled, msi_notify answers
 * HV_ENOENT, and while either is enabled the function's INTx is not asserted. */
#define HV_EXT_MSIX "hv.msix/1"
#define HV_MSIX_MAX_VECTORS 2048u

typedef struct hv_msix_desc {
    uint32_t struct_size;
    uint32_t vectors;            /* 1..HV_MSIX_MAX_VECTORS */
    uint32_t bar;                /* a memory BAR declared with pci_add_bar (not a RAM BAR) */
    uint32_t table_offset;       /* 8-byte aligned; 16 * vectors bytes */
    uint32_t pba_offset;         /* 8-byte aligned; 8 * ((vectors + 63) / 64) bytes */
    uint32_t reserved;
} hv_msix_desc;

typedef struct hv_msix_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only, after the BAR is declared. One per instance.
     * HV_EINVAL for a bad vector count, a BAR that is not a declared memory BAR, or a
     * table or PBA that is misaligned, outside the BAR or overlaps the other (or a
     * doorbell); HV_EEXIST for a second call. */
    int (*msix_add)(hv_host *host, const hv_msix_desc *desc);
    /* [any] Sends MSI-X vector `vector` with the address and data the guest wrote in
     * its table entry. HV_ENOENT when the guest has not enabled MSI-X (fall back to
     * msi_notify, then INTx), HV_EAGAIN when the vector or the whole function is
     * masked (the pending bit is set and the message is sent on unmask), HV_ERANGE for
     * a vector beyond the table. Like MSI, a message is not sent while bus mastering
     * is off in the command register (the call still returns HV_OK). */
    int (*msix_notify)(hv_host *host, uint32_t vector);
} hv_msix_ext;

/* "hv.doorbell/1" (1.1): doorbell registers. A guest write of exactly `size` bytes at
 * `offset` in the BAR (and, with HV_DOORBELL_DATAMATCH, of the value `datamatch`) is
 * completed by the host without calling the BAR's write handler: with KVM it never
 * leaves the kernel (KVM_IOEVENTFD, assigned at the BAR's current address while it
 * decodes), and the device's `ring` callback runs soon after on the instance's
 * doorbell thread, not on the vCPU. The written value is not passed on: a doorbell
 * says "something changed"; the device reads its ring index from shared memory, or
 * registers one doorbell per value with HV_DOORBELL_DATAMATCH. Every other access to
 * the register (reads, other sizes, other values) reaches the BAR's handlers as usual.
 * Rings that arrive before the callback runs are coalesced: `count` says how many. */
#define HV_EXT_DOORBELL "hv.doorbell/1"
#define HV_DOORBELL_DATAMATCH 0x1u
#define HV_DOORBELL_MAX 64u          /* per instance */

/* [device] On the instance's doorbell thread (for an HV_DEVICE_THREAD_SAFE model with
 * no host lock held). count >= 1. */
typedef void (*hv_doorbell_fn)(hv_device *dev, void *opaque, uint64_t count);

typedef struct hv_doorbell_desc {
    uint32_t struct_size;
    uint32_t bar;                /* a BAR declared with pci_add_bar (I/O or memory) */
    uint64_t offset;             /* naturally aligned to size */
    uint32_t size;               /* 1, 2, 4 or 8 (8 not for I/O BARs) */
    uint32_t flags;              /* HV_DOORBELL_DATAMATCH */
    uint64_t datamatch;          /* with HV_DOORBELL_DATAMATCH: the value that rings */
    hv_doorbell_fn ring;         /* mandatory */
    void *opaque;                /* passed to ring */
} hv_doorbell_desc;

typedef struct hv_doorbell_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create() only, after the BAR is declared. The doorbell lives
     * until the instance is destroyed; its callback does not run after the destroy op
     * begins. HV_EINVAL for a bad BAR, size, alignment or range, a NULL ring, or a
     * register inside the MSI-X table or PBA; HV_EEXIST when a doorbell of the same
     * offset and size already rings for this value (or for any value); HV_ENOSPC
     * beyond HV_DOORBELL_MAX. */
    int (*doorbell_add)(hv_host *host, const hv_doorbell_desc *desc);
} hv_doorbell_ext;

/* "hv.net-queue/1" (1.1): network ports are queues.
 *
 * Every port has a bounded receive queue (512 frames) with buffers allocated once, drained
 * by the port's own host thread, which calls hv_net_client.receive [net-rx]. A frame
 * from one guest to another is copied twice: by send_guest from the sender's guest
 * memory into the receiving port's queue, and by the receiving NIC from the queue into
 * its guest's buffers (net_send adds the copy into the plugin's own buffer before it).
 * No call runs one device's code on another device's thread, so a NIC needs no
 * transmit queue of its own: it may send from inside any [device] call. */
#define HV_EXT_NET_QUEUE "hv.net-queue/1"

/* Most segments send_guest takes for one frame. */
#define HV_NET_MAX_SEGMENTS 64u

/* A piece of a frame in the device's guest memory. */
typedef struct hv_net_segment {
    uint64_t gpa;
    uint32_t len;                /* bytes, >= 1 */
    uint32_t reserved;           /* 0 */
} hv_net_segment;

typedef struct hv_net_queue_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [any] Sends one frame gathered from the device's guest memory: the segments in
     * order, then zeros up to `pad_to` bytes (0 = no padding; an auto-padding NIC
     * passes 60). The host validates everything before it copies anything: HV_EINVAL
     * for 0 or more than HV_NET_MAX_SEGMENTS segments, a segment of length 0 or with
     * reserved != 0, or a frame outside 14..65535 bytes; HV_EFAULT when a segment is
     * not entirely guest RAM; HV_EAGAIN when the link is down (dropped and counted).
     * The bytes are copied from guest memory into the receiving ports' queues before
     * this returns; `segments` is read only during the call. Bus-master checks are the
     * device's. Like net_send, never calls into any device. */
    int (*send_guest)(hv_net_port *port, const hv_net_segment *segments, uint32_t count,
                      uint32_t pad_to);
    /* [any] enable = 1: from now on HV_EAGAIN from receive keeps the frame at the head
     * of the port's queue and the host stops delivering to this port until rx_ready;
     * frames that arrive meanwhile wait in the queue, and those that do not fit are
     * dropped and counted (rxDrops), as by a NIC without descriptors. enable = 0 (the
     * default): HV_EAGAIN drops the frame; held frames are retried at once. Call it
     * right after net_attach. HV_EINVAL for a NULL port. */
    int (*rx_backpressure)(hv_net_port *port, int enable);
    /* [any] The device has room again (e.g. the guest posted receive buffers): the
     * port's thread retries the held frame. Returns at once and never calls receive
     * itself, so it may be called under the plugin's own locks and from inside any
     * [device] call, receive included. Calls while nothing is held are harmless. */
    void (*rx_ready)(hv_net_port *port);
} hv_net_queue_ext;

/* "hv.net-offload/1" (1.2): transmit offloads done by the VMkernel, as ESX does for a
 * vmxnet: a NIC hands over a frame larger than the wire's MTU, or without its transport
 * checksum, with what is left to do. A receiving port that declared large frames gets
 * the frame whole (one packet, its checksums completed, IP length fields set); every
 * other receiver gets complete MSS-sized segments (IPv4 ids counting up, TCP sequence
 * advanced, FIN/PSH only on the last and CWR only on the first, checksums computed). */
#define HV_EXT_NET_OFFLOAD "hv.net-offload/1"

/* hv_net_offload.flags */
#define HV_NET_OFFLOAD_CSUM 0x1u  /* 16-bit Internet checksum over [csum_start, end of frame)
                                     stored at csum_offset; the field holds the pseudo-
                                     header sum when handed over (Linux CHECKSUM_PARTIAL) */
#define HV_NET_OFFLOAD_TSO  0x2u  /* TCP over IPv4 or IPv6 (no extension headers; an
                                     802.1Q tag is allowed): hdr_len bytes of headers, the
                                     payload cut every mss bytes; the TCP checksum field
                                     is recomputed, csum_start/csum_offset are ignored */

typedef struct hv_net_offload {
    uint32_t struct_size;
    uint32_t flags;              /* HV_NET_OFFLOAD_*, at least one */
    uint16_t csum_start;         /* CSUM: first byte summed */
    uint16_t csum_offset;        /* CSUM: where the checksum goes, >= csum_start */
    uint16_t hdr_len;            /* TSO: Ethernet + IP + TCP header bytes (as the frame says) */
    uint16_t mss;                /* TSO: payload bytes per segment, >= 1 */
} hv_net_offload;

typedef struct hv_net_offload_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [any] Sends the `len`-byte frame at `frame` (14..65535 bytes, any MTU) with
     * `offload`. The host validates the metadata against the frame before anything is
     * sent: HV_EINVAL for a bad length, unknown or no flags, checksum offsets outside
     * the frame, or a TSO frame that is not TCP over IPv4/IPv6 with hdr_len covering
     * exactly its headers, or mss 0; HV_EAGAIN when the link is down. The frame is read
     * only during the call and copied (whole or in segments) into the receiving ports'
     * queues before it returns; like net_send it never calls into any device. */
    int (*send_offload)(hv_net_port *port, const void *frame, size_t len, const hv_net_offload *offload);
    /* [any] large = 1: this port's NIC takes TCP frames above its MTU (an LRO-capable
     * receiver), so offloaded sends reach it whole; 0 (the default): it gets segments. */
    int (*set_rx_large)(hv_net_port *port, int large);
} hv_net_offload_ext;

/* "hv.scsi/1" (1.2): the VMkernel SCSI layer.
 *
 * An HBA plugin (HV_DEVICE_KIND_SCSI) emulates the adapter only: its registers,
 * mailboxes or message frames, its scatter/gather format. It hands each SCSI command
 * to the host as a CDB plus guest-physical data segments; the host's one SCSI target
 * implementation (the same for every adapter) executes it against the unit's virtual
 * disk (`scsiN:T.fileName`, with its mode and redo log) and completes it with a SAM
 * status, sense data and a residual. Targets are 0..15 of the adapter's own
 * `scsiN:T.*` keys; each present target has LUN 0 only. The adapter's own id
 * (conventionally 7) is not a target. Commands to an absent target complete with
 * HV_SCSI_HOST_NO_TARGET (the adapter reports a selection timeout); commands to an
 * absent LUN of a present target complete GOOD for INQUIRY (peripheral qualifier 3)
 * and REQUEST SENSE / REPORT LUNS, CHECK CONDITION (ILLEGAL REQUEST, LOGICAL UNIT NOT
 * SUPPORTED) otherwise. */
#define HV_EXT_SCSI "hv.scsi/1"

typedef struct hv_scsi_bus hv_scsi_bus;    /* host-owned: the targets of one adapter */

#define HV_SCSI_MAX_TARGETS  16u
#define HV_SCSI_MAX_CDB      16u
#define HV_SCSI_MAX_SEGMENTS 1024u         /* per request */
#define HV_SCSI_SENSE_MAX    96u

/* Data direction, as the adapter's request says. */
#define HV_SCSI_DATA_NONE 0u
#define HV_SCSI_DATA_IN   1u               /* device -> guest memory (e.g. READ) */
#define HV_SCSI_DATA_OUT  2u               /* guest memory -> device (e.g. WRITE) */
#define HV_SCSI_DATA_BY_CDB 3u             /* the adapter does not say (BusLogic's "direction
                                            * by command"): the CDB decides, the segments
                                            * serve either way */

/* SAM status codes (hv_scsi_result.status). */
#define HV_SCSI_STATUS_GOOD            0x00u
#define HV_SCSI_STATUS_CHECK_CONDITION 0x02u
#define HV_SCSI_STATUS_BUSY            0x08u
#define HV_SCSI_STATUS_RESERVATION     0x18u
#define HV_SCSI_STATUS_TASK_ABORTED    0x40u

/* What happened on the "wire" (hv_scsi_result.host_status); status and sense are
 * meaningful only with HV_SCSI_HOST_OK. */
#define HV_SCSI_HOST_OK        0u          /* the target answered */
#define HV_SCSI_HOST_NO_TARGET 1u          /* selection timeout: no such target */
#define HV_SCSI_HOST_BAD_DMA   2u          /* a segment is not guest RAM; nothing or part moved */
#define HV_SCSI_HOST_ABORTED   3u          /* ended by abort/reset before it completed */
#define HV_SCSI_HOST_DATA_DIR  4u          /* direction disagrees with the CDB (e.g. READ with DATA_OUT) */
#define HV_SCSI_HOST_DATA_OVERRUN 5u       /* the command wanted to move more bytes than the
                                            * segments hold (e.g. READ of 8 blocks into 2 KiB,
                                            * or DATA_NONE): a READ or WRITE moves nothing, a
                                            * parameter reply (INQUIRY ...) fills the segments */

typedef struct hv_scsi_result {
    uint32_t struct_size;
    uint8_t host_status;         /* HV_SCSI_HOST_* */
    uint8_t status;              /* HV_SCSI_STATUS_* */
    uint16_t sense_len;          /* valid bytes in sense (0 unless CHECK CONDITION) */
    uint64_t residual;           /* bytes of the data segments not transferred */
    uint8_t sense[HV_SCSI_SENSE_MAX];  /* fixed-format (0x70) sense data */
} hv_scsi_result;

/* [any] Called exactly once per accepted request, on a host I/O thread and never from
 * inside submit, with no host lock held and without the device lock: a model that is
 * not HV_DEVICE_THREAD_SAFE takes its own lock here. `result` is valid only for the
 * call. */
typedef void (*hv_scsi_complete_fn)(hv_device *dev, uint64_t tag, const hv_scsi_result *result);

typedef struct hv_scsi_request {
    uint32_t struct_size;
    uint32_t target;             /* 0..HV_SCSI_MAX_TARGETS-1 */
    uint32_t lun;
    uint32_t direction;          /* HV_SCSI_DATA_* */
    uint8_t cdb[HV_SCSI_MAX_CDB];
    uint32_t cdb_len;            /* 6..16; bytes past it are ignored */
    uint32_t segment_count;      /* 0..HV_SCSI_MAX_SEGMENTS (0 with DATA_NONE) */
    const hv_disk_segment *segments;  /* copied by the host before submit returns */
    uint64_t tag;                /* returned unchanged in the completion */
    hv_scsi_complete_fn complete;     /* mandatory */
} hv_scsi_request;

typedef struct hv_scsi_ext {
    uint32_t struct_size;
    uint32_t reserved;
    /* [control] During create(): the bus of this adapter instance (the targets of its
     * `scsiN:T.*` keys). Lives until the instance is destroyed; the host waits for every
     * request in flight before the destroy op runs. HV_ENOENT for a device that is not
     * a SCSI adapter. */
    int (*bus_open)(hv_host *host, hv_scsi_bus **bus);
    /* [any] Bit t set when target t is present. For the adapter's own bookkeeping (a
     * BIOS-style scan or a "devices" report); guests still find targets by INQUIRY. */
    uint32_t (*target_mask)(hv_scsi_bus *bus);
    /* [any] Queues a command; it completes through req->complete. HV_OK when queued;
     * HV_EINVAL, with no completion, for a malformed request: target >= 16, cdb_len
     * outside 6..16, a bad direction, too many segments, a segment of length 0, or
     * segments with DATA_NONE. Everything about the command itself (opcode, LBA range,
     * transfer length against the segments, guest addresses) is answered in the
     * completion, as a target would. May be called from inside any [device] call. */
    int (*submit)(hv_scsi_bus *bus, const hv_scsi_request *req);
    /* [device] Task management: ends the requests in flight for `target` (all targets
     * for -1) and returns once each has completed (HV_SCSI_HOST_ABORTED when it had not
     * finished yet). Completions run on other threads meanwhile, so the caller must not
     * hold a lock its completion callback takes. With `reset` = 1 the targets also
     * return to their power-on state and report UNIT ATTENTION (29h/00h POWER ON,
     * RESET) on their next command, as after a bus or target reset. Called from inside
     * a completion callback it ends the requests and applies the reset without waiting
     * (the callback would wait for itself) and returns HV_EDEADLK; the requests still
     * complete later. HV_EINVAL for a target outside -1..15. */
    int (*abort_all)(hv_scsi_bus *bus, int32_t target, int reset);
} hv_scsi_ext;

/* ------------------------------------------------------------------------ */
/* Declared configuration keys and typed commands (1.2)                      */
/* ------------------------------------------------------------------------ */

/*
 * A device model declares the .vmx keys it reads (relative to its prefix, as
 * config_get takes them: "address" for `ethernet0.address`); a scheduler policy
 * declares its tunables the same way. The host checks every key present under a
 * device's prefix against the declarations of the model the file selects
 * (`hvhost validate`): a bad value is an error naming file:line, an undeclared key a
 * warning with the closest declared name (`hvhost run` does the same before power-on
 * and refuses the VM on a bad value). Keys the host itself interprets for a device kind
 * (present, virtualDev or model; a NIC's networkName, address, addressType and
 * generatedAddress; svga.vramSize; a SCSI adapter's `:N.*` disk keys) need no
 * declaration, though a model may declare those it reads too. A model that declares
 * no keys is not checked. Declarations are [load] data: read when the plugin loads,
 * valid and unchanged until deinit.
 */
#define HV_KEY_BOOL   1u   /* TRUE/FALSE, true/false, yes/no, 1/0 (case-insensitive) */
#define HV_KEY_INT    2u   /* decimal or 0x hex, signed, within min..max */
#define HV_KEY_UINT   3u   /* decimal or 0x hex, unsigned, within min..max */
#define HV_KEY_STRING 4u   /* any text */
#define HV_KEY_MAC    5u   /* xx:xx:xx:xx:xx:xx */
#define HV_KEY_ENUM   6u   /* one of `choices` (case-insensitive) */

typedef struct hv_config_key {
    uint32_t struct_size;        /* sizeof(hv_config_key) */
    uint32_t type;               /* HV_KEY_* */
    const char *name;            /* 1..64 bytes of [A-Za-z0-9_.-]; unique per model */
    /* HV_KEY_INT / HV_KEY_UINT: the inclusive range (for UINT read as uint64_t values
     * stored in the same bits); min > max means no range. Ignored for other types. */
    int64_t min;
    int64_t max;
    const char *choices;         /* HV_KEY_ENUM: "a|b|c"; NULL otherwise */
    const char *default_value;   /* as it would be written in a .vmx; NULL = none */
    const char *help;            /* one line, may be NULL */
} hv_config_key;

/*
 * Typed commands. A model or policy exports a table of named C functions with declared
 * signatures; the host's console parses the operator's words by the declared types and
 * calls the function through libffi (`device VM DEV CMD ARGS...`, `sched tune POOL KEY
 * VALUE`, `sched cmd POOL CMD ARGS...`). Wrong counts or types are refused with the
 * signature in the message and never reach the plugin. The function is called as
 *
 *     result fn(instance, arg0, arg1, ...)
 *
 * where instance is the hv_device * (called [device]: under the device lock unless the
 * model is HV_DEVICE_THREAD_SAFE, never while the VM is paused or the instance is
 * being destroyed) or the hv_sched_policy * (called [sched], with the pool lock held:
 * must not block). Argument and result types:
 */
#define HV_ARG_VOID   0u   /* result only: nothing */
#define HV_ARG_I8     1u   /* int8_t  */
#define HV_ARG_I16    2u   /* int16_t */
#define HV_ARG_I32    3u   /* int32_t */
#define HV_ARG_I64    4u   /* int64_t */
#define HV_ARG_U8     5u   /* uint8_t  */
#define HV_ARG_U16    6u   /* uint16_t */
#define HV_ARG_U32    7u   /* uint32_t */
#define HV_ARG_U64    8u   /* uint64_t */
#define HV_ARG_DOUBLE 9u   /* double */
#define HV_ARG_STRING 10u  /* const char *, NUL-terminated, valid only for the call */
#define HV_ARG_BOOL   11u  /* int, 0 or 1 (console words: true/false, 1/0, yes/no, on/off) */
/* An out-buffer for text: two C parameters, `char *buf, size_t len`. The host passes a
 * zeroed buffer of HV_COMMAND_TEXT_MAX bytes and prints what the function wrote (up to
 * the first NUL). Takes no console word. At most one per command. Not a result type. */
#define HV_ARG_TEXT_OUT 12u
#define HV_COMMAND_TEXT_MAX 4096u
#define HV_COMMAND_MAX_ARGS 8u

/* hv_command.flags */
/* A tunable: exactly one argument, result HV_ARG_I32 (HV_OK or a negative HV_E*). Its
 * name is also a declared key of the same table owner (type, range, default), so
 * `sched tune POOL KEY VALUE` and `hvhost sched-sim --set KEY=VALUE` check the value
 * against the key before calling. */
#define HV_COMMAND_TUNABLE 0x1u

typedef struct hv_command {
    uint32_t struct_size;        /* sizeof(hv_command) */
    uint32_t flags;              /* HV_COMMAND_* */
    const char *name;            /* 1..64 bytes of [a-z0-9_-]; unique per table */
    const char *help;            /* one line, may be NULL */
    void (*fn)(void);            /* the function, cast; called with the declared signature */
    uint32_t result;             /* HV_ARG_VOID or an HV_ARG_* other than STRING and TEXT_OUT */
    uint32_t arg_count;          /* 0..HV_COMMAND_MAX_ARGS, TEXT_OUT counted once */
    const uint32_t *args;        /* arg_count HV_ARG_* (NULL when arg_count is 0) */
    const char *const *arg_names;/* arg_count names for messages, or NULL */
} hv_command;

/* ------------------------------------------------------------------------ */
/* Device factory                                                           */
/* ------------------------------------------------------------------------ */

/*
 * Device lifecycle: the one order in which the host calls a device (since 1.1).
 * Each step runs on the host's control thread, device after device in .vmx order,
 * and only once the previous step has finished for every device of the VM.
 *
 *  Power-on   create (declares PCI identity, BARs, MSI; may create timers and attach
 *             backends) -> the host assigns BAR addresses and interrupt lines, as
 *             firmware would -> realize -> reset -> the vCPUs run. No receive
 *             reaches the device before its reset.
 *  Running    [device] calls: BAR accesses (vCPU threads), timer callbacks (the VM's
 *             timer thread), receive/link_changed (the sender's thread), disk
 *             completions (I/O threads).
 *  Guest reset  the VM is powered off (destroy) and powered on again (create ...).
 *  Pause      the vCPUs leave guest mode and stay out -> the timer thread stops (a
 *             callback in flight returns first) -> receives stop (one in flight returns
 *             first; later frames are dropped and counted by the switch, link changes
 *             are not delivered) and every disk request submitted so far completes ->
 *             pause -> the VM clock stops. Until resume, no [device] or [any] call
 *             reaches the device.
 *  Resume     the VM clock runs -> resume -> receives, disk completions and timer
 *             callbacks flow again -> the vCPUs run.
 *  Suspend    (save) pause -> save_state -> destroy. The host refuses to suspend a VM
 *             whose devices lack save_state or load_state, naming the device, before
 *             anything stops; when the state cannot be written, resume follows instead.
 *  Restore    create -> the host restores PCI configuration space (BARs, command,
 *             MSI, INTx) -> realize -> load_state (instead of reset; the VM clock reads
 *             the saved time and stands still) -> resume -> the vCPUs run. No
 *             receive reaches the device before its resume.
 *  Destroy    from any state after create: the host waits for disk requests in flight
 *             (their completions are no longer delivered), detaches the network port
 *             (waiting out a receive in flight) and cancels every timer without waiting,
 *             then calls destroy; timer handles stay valid until destroy returns and are
 *             freed after. An ordinary model's callbacks need the device lock, so none
 *             runs after destroy begins. A thread-safe model's callback may still be
 *             running: such a model calls timer_cancel_wait ("hv.timer/1") on each
 *             timer in destroy before it frees what the callbacks use.
 */

/* Operations on an instance. Only destroy is mandatory. The order of the calls is
 * "Device lifecycle" above. */
typedef struct hv_device_ops {
    uint32_t struct_size;
    /* [control] After every device of the VM is created and BARs are assigned,
     * before the first vCPU runs. Optional. */
    int (*realize)(hv_device *dev);
    /* [device] Power-on or guest-visible reset: return to the hardware reset state. */
    void (*reset)(hv_device *dev);
    /* [control] VM paused / resumed (before save, after restore). Optional; timers,
     * receives and disk completions are quiet while paused. */
    void (*pause)(hv_device *dev);
    void (*resume)(hv_device *dev);
    /* [control] Writes the device's state through host->state_put. The host stores
     * it as a section named after the model, with the model's `state_version`.
     * PCI configuration space (BARs, command, MSI) is saved and restored by the host;
     * the device restores its own INTx level in load_state (irq_set_level) from its
     * registers. Optional; a device without it cannot be suspended or migrated and the
     * host says so. */
    int (*save_state)(hv_device *dev, hv_state_writer *w);
    /* [control] Reads state written by save_state of `version` (<= its own), on a
     * fresh instance (after create and realize, instead of reset). */
    int (*load_state)(hv_device *dev, hv_state_reader *r, uint32_t version);
    /* [control] Frees the instance. The port is already detached and timers are
     * cancelled; timer handles are freed after this returns. Mandatory. */
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

    /* --- appended in 1.2 (read only when struct_size covers them) ---------- */

    uint32_t key_count;          /* entries in keys; 0 = the model declares none */
    uint32_t command_count;      /* entries in commands */
    const hv_config_key *keys;   /* the .vmx keys the model reads (see hv_config_key) */
    const hv_command *commands;  /* called with the hv_device * first ([device]) */
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
 * pick_next and bit i of `affinity`. Where they sit on the host (SMT siblings, cores,
 * packages, NUMA nodes, caches) comes with set_topology (1.3); a policy without it
 * takes slots 2k and 2k+1 as the two hyperthreads of one core. htsharing: 0 any; 1 internal, only a vCPU of the same `vm` may
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

/*
 * Where a pool's slots sit on the host (1.3): one hv_sched_pcpu per pool-local slot,
 * read from the host's sysfs (packages, cores, SMT siblings, NUMA nodes, shared
 * caches). A slot pinned to a host CPU (`hvhost run --pcpus N@LIST`, `--pcpus host`)
 * has its place; an unpinned slot has -1 everywhere and shares nothing. Two slots
 * pinned to the same host CPU count as SMT siblings (they compete for it).
 */
typedef struct hv_sched_pcpu {
    uint32_t struct_size;
    int32_t host_cpu;            /* Linux CPU number, -1 unpinned */
    int32_t package;             /* physical_package_id (socket), -1 unknown */
    int32_t core;                /* core_id, unique within its package, -1 unknown */
    int32_t numa_node;           /* -1 unknown */
    int32_t llc;                 /* lowest CPU sharing its last-level cache, -1 unknown */
    uint64_t smt_siblings;       /* bit i: pool slot i is on the same core (not itself) */
    uint64_t llc_sharers;        /* bit i: pool slot i shares the last-level cache */
} hv_sched_pcpu;

typedef struct hv_sched_topology {
    uint32_t struct_size;
    uint32_t pcpu_count;         /* entries in pcpus: the pool's slot count */
    uint32_t pcpu_size;          /* sizeof(hv_sched_pcpu) as the host was built */
    uint32_t reserved;           /* 0 */
    const hv_sched_pcpu *pcpus;  /* entry i = pool-local slot i, pcpu_size apart */
} hv_sched_topology;

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
 * with the built-in fallback. In a VMkernel pool the ops of one instance run on a
 * host thread of that instance's own, under a deadline (hvhost
 * --sched-call-deadline-ms, 250 ms by default): an op still running then is abandoned
 * on that thread, which is never called, joined or deinit'ed again, and the pool
 * switches to the fallback.
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

    /* --- appended in 1.3 (read only when struct_size covers them) ---------- */

    /* Optional. [sched] The pool's slots as placed on the host (hv_sched_topology; valid
     * only for the call, copy what you keep). Called once after init, before the first
     * vcpu_add. Without it a policy may assume slots 2k and 2k+1 are SMT siblings. */
    void (*set_topology)(hv_sched_policy *p, const hv_sched_topology *topology);
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

    /* --- appended in 1.2 (read only when struct_size covers them) ---------- */

    uint32_t key_count;          /* tunables declared as keys (see HV_COMMAND_TUNABLE) */
    uint32_t command_count;
    const hv_config_key *keys;
    const hv_command *commands;  /* called with the hv_sched_policy * first ([sched]) */
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
    /* --- appended in 1.2 (read only when struct_size covers them) --- */
    uint8_t src_ip6[16];         /* IPv6 addresses as on the wire; all 0 if not IPv6 */
    uint8_t dst_ip6[16];
} hv_frame_info;
/* How the host drives a teaming policy (1.2): one instance per virtual switch with
 * uplinks. uplink_add for each uplink in failover order (ids 0..n-1, order = position);
 * an uplink is down until link_changed(up=1); link_changed follows the host interface's
 * carrier (netlink). select_uplink runs for every frame a vNIC sends that leaves the
 * switch, and also with a synthetic frame per port (dst ff:ff:ff:ff:ff:ff, ethertype 0)
 * to learn the port's own uplink: broadcasts from the far switch reach a port only
 * through that uplink, and when it changes the host sends a RARP per moved MAC. An answer
 * that is not -1 and not an up uplink replaces the policy by the host's built-in
 * failover for the switch's lifetime (logged). should_failback is asked when a link
 * comes back; 0 keeps it out of the team until another member fails. */

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
