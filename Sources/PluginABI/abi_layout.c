/* Compile-time guards on the 1.x layout (LP64). If one fires, a change broke the ABI:
 * fields may only be appended, never inserted, resized or reordered. */
#include "hvplugin.h"

#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(offsetof(hv_plugin_entry, get_factory) == 56, "hv_plugin_entry layout changed");
_Static_assert(offsetof(hv_plugin_entry, init_with_info) == 72, "hv_plugin_entry layout changed"); /* 1.0 size 72 */
_Static_assert(sizeof(hv_plugin_entry) == 80, "hv_plugin_entry layout changed");
_Static_assert(sizeof(hv_plugin_load_info) == 16, "hv_plugin_load_info layout changed");
_Static_assert(sizeof(hv_pci_identity) == 20, "hv_pci_identity layout changed");
_Static_assert(sizeof(hv_bar_desc) == 40, "hv_bar_desc layout changed");
_Static_assert(offsetof(hv_host_services, log) == 8, "hv_host_services layout changed");
_Static_assert(offsetof(hv_host_services, disk_submit) == 8 + 22 * 8, "hv_host_services layout changed");
_Static_assert(offsetof(hv_host_services, pci_command) == 8 + 23 * 8, "hv_host_services layout changed");
_Static_assert(offsetof(hv_host_services, get_extension) == 8 + 24 * 8, "hv_host_services layout changed");
_Static_assert(sizeof(hv_host_services) == 8 + 25 * 8, "hv_host_services grows only by extensions since 1.1");
_Static_assert(sizeof(hv_timer_ext) == 16, "hv_timer_ext layout changed");
_Static_assert(sizeof(hv_legacy_region) == 56, "hv_legacy_region layout changed");
_Static_assert(offsetof(hv_legacy_region, name) == 48, "hv_legacy_region layout changed");
_Static_assert(sizeof(hv_legacy_io_ext) == 16, "hv_legacy_io_ext layout changed");
_Static_assert(sizeof(hv_rom_ext) == 24, "hv_rom_ext layout changed");
_Static_assert(sizeof(hv_display_mode) == 32, "hv_display_mode layout changed");
_Static_assert(offsetof(hv_display_mode, framebuffer) == 24, "hv_display_mode layout changed");
_Static_assert(sizeof(hv_display_cursor) == 32, "hv_display_cursor layout changed");
_Static_assert(offsetof(hv_display_cursor, pixels) == 24, "hv_display_cursor layout changed");
_Static_assert(sizeof(hv_display_ext) == 72, "hv_display_ext layout changed");
_Static_assert(offsetof(hv_display_ext, cursor_show) == 56, "hv_display_ext layout changed"); /* 1.1 size 64 */
_Static_assert(offsetof(hv_display_ext, copy) == 64, "hv_display_ext layout changed");
_Static_assert(sizeof(hv_pointer_event) == 24, "hv_pointer_event layout changed");
_Static_assert(sizeof(hv_input_client) == 24, "hv_input_client layout changed");
_Static_assert(sizeof(hv_input_ext) == 16, "hv_input_ext layout changed");
_Static_assert(sizeof(hv_ram_bar_desc) == 24, "hv_ram_bar_desc layout changed");
_Static_assert(offsetof(hv_ram_bar_desc, size) == 16, "hv_ram_bar_desc layout changed");
_Static_assert(sizeof(hv_ram_bar_ext) == 24, "hv_ram_bar_ext layout changed");
_Static_assert(offsetof(hv_ram_bar_ext, ram_bar_dirty) == 16, "hv_ram_bar_ext layout changed");
_Static_assert(sizeof(hv_msix_desc) == 24, "hv_msix_desc layout changed");
_Static_assert(offsetof(hv_msix_desc, pba_offset) == 16, "hv_msix_desc layout changed");
_Static_assert(sizeof(hv_msix_ext) == 24, "hv_msix_ext layout changed");
_Static_assert(offsetof(hv_msix_ext, msix_notify) == 16, "hv_msix_ext layout changed");
_Static_assert(sizeof(hv_doorbell_desc) == 48, "hv_doorbell_desc layout changed");
_Static_assert(offsetof(hv_doorbell_desc, datamatch) == 24, "hv_doorbell_desc layout changed");
_Static_assert(offsetof(hv_doorbell_desc, ring) == 32, "hv_doorbell_desc layout changed");
_Static_assert(sizeof(hv_doorbell_ext) == 16, "hv_doorbell_ext layout changed");
_Static_assert(sizeof(hv_net_segment) == 16, "hv_net_segment layout changed");
_Static_assert(sizeof(hv_net_queue_ext) == 32, "hv_net_queue_ext layout changed");
_Static_assert(offsetof(hv_net_queue_ext, rx_ready) == 24, "hv_net_queue_ext layout changed");
_Static_assert(sizeof(hv_net_offload) == 16, "hv_net_offload layout changed");
_Static_assert(offsetof(hv_net_offload, mss) == 14, "hv_net_offload layout changed");
_Static_assert(sizeof(hv_net_offload_ext) == 24, "hv_net_offload_ext layout changed");
_Static_assert(offsetof(hv_net_offload_ext, set_rx_large) == 16, "hv_net_offload_ext layout changed");
_Static_assert(offsetof(hv_device_model, key_count) == 48, "hv_device_model layout changed"); /* 1.1 size 48 */
_Static_assert(offsetof(hv_device_model, commands) == 64, "hv_device_model layout changed");
_Static_assert(sizeof(hv_device_model) == 72, "hv_device_model layout changed");
_Static_assert(sizeof(hv_device_ops) == 64, "hv_device_ops layout changed");
_Static_assert(sizeof(hv_sched_ops) == 112, "hv_sched_ops layout changed");  /* 1.3: set_topology */
_Static_assert(offsetof(hv_sched_ops, dump) == 88, "hv_sched_ops layout changed");
_Static_assert(offsetof(hv_sched_ops, preempt) == 96, "hv_sched_ops layout changed");  /* appended; v1 size 96 */
_Static_assert(offsetof(hv_sched_policy_desc, key_count) == 32, "hv_sched_policy_desc layout changed"); /* 1.1 size 32 */
_Static_assert(offsetof(hv_sched_policy_desc, commands) == 48, "hv_sched_policy_desc layout changed");
_Static_assert(sizeof(hv_sched_policy_desc) == 56, "hv_sched_policy_desc layout changed");
_Static_assert(offsetof(hv_sched_policy_desc, ops) == 24, "hv_sched_policy_desc layout changed");
_Static_assert(sizeof(hv_sched_factory) == 24, "hv_sched_factory layout changed");
_Static_assert(offsetof(hv_sched_factory, policies) == 16, "hv_sched_factory layout changed");
_Static_assert(sizeof(hv_teaming_ops) == 64, "hv_teaming_ops layout changed");
_Static_assert(offsetof(hv_frame_info, dst_ip) == 28, "hv_frame_info layout changed");  /* 1.0 size 32 */
_Static_assert(offsetof(hv_frame_info, src_ip6) == 32, "hv_frame_info layout changed");
_Static_assert(sizeof(hv_frame_info) == 64, "hv_frame_info layout changed");
_Static_assert(sizeof(hv_teaming_policy_desc) == 32, "hv_teaming_policy_desc layout changed");
_Static_assert(offsetof(hv_teaming_policy_desc, ops) == 24, "hv_teaming_policy_desc layout changed");
_Static_assert(sizeof(hv_teaming_factory) == 24, "hv_teaming_factory layout changed");
_Static_assert(offsetof(hv_teaming_factory, policies) == 16, "hv_teaming_factory layout changed");
_Static_assert(offsetof(hv_scsi_request, cdb) == 16, "hv_scsi_request layout changed");
_Static_assert(offsetof(hv_scsi_request, segments) == 40, "hv_scsi_request layout changed");
_Static_assert(sizeof(hv_scsi_request) == 64, "hv_scsi_request layout changed");
_Static_assert(offsetof(hv_scsi_result, sense) == 16, "hv_scsi_result layout changed");
_Static_assert(sizeof(hv_scsi_result) == 112, "hv_scsi_result layout changed");
_Static_assert(sizeof(hv_scsi_ext) == 40, "hv_scsi_ext layout changed");
_Static_assert(sizeof(hv_config_key) == 56, "hv_config_key layout changed");
_Static_assert(offsetof(hv_config_key, help) == 48, "hv_config_key layout changed");
_Static_assert(sizeof(hv_command) == 56, "hv_command layout changed");
_Static_assert(offsetof(hv_command, args) == 40, "hv_command layout changed");
/* 1.3: scheduler topology */
_Static_assert(offsetof(hv_sched_ops, set_topology) == 104, "hv_sched_ops layout changed");
_Static_assert(sizeof(hv_sched_pcpu) == 40, "hv_sched_pcpu layout changed");
_Static_assert(offsetof(hv_sched_pcpu, smt_siblings) == 24, "hv_sched_pcpu layout changed");
_Static_assert(sizeof(hv_sched_topology) == 24, "hv_sched_topology layout changed");
_Static_assert(offsetof(hv_sched_topology, pcpus) == 16, "hv_sched_topology layout changed");
#endif
