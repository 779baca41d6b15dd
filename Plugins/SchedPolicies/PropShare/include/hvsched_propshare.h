/* hvsched_propshare.h — the one symbol libSchedPropShare.so exports: the hvplugin.h entry point.
 * Scheduler policies it offers through HV_FACTORY_SCHED_POLICY: propshare. */
#ifndef HVSCHED_PROPSHARE_H
#define HVSCHED_PROPSHARE_H
#include "hvplugin.h"
const hv_plugin_entry *hv_plugin_entry_v1(void);
#endif
