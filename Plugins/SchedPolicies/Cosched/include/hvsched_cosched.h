/* hvsched_cosched.h — the one symbol libSchedCosched.so exports: the hvplugin.h entry point.
 * Scheduler policies it offers through HV_FACTORY_SCHED_POLICY: cosched-strict, cosched-relaxed. */
#ifndef HVSCHED_COSCHED_H
#define HVSCHED_COSCHED_H
#include "hvplugin.h"
const hv_plugin_entry *hv_plugin_entry_v1(void);
#endif
