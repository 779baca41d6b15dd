/* hvsched_roundrobin.h — the one symbol libSchedRoundRobin.so exports: the hvplugin.h entry point.
 * Scheduler policies it offers through HV_FACTORY_SCHED_POLICY: roundrobin. */
#ifndef HVSCHED_ROUNDROBIN_H
#define HVSCHED_ROUNDROBIN_H
#include "hvplugin.h"
const hv_plugin_entry *hv_plugin_entry_v1(void);
#endif
