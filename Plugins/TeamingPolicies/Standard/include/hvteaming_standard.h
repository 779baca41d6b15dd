/* hvteaming_standard.h — the one symbol libTeamingStandard.so exports: the hvplugin.h entry
 * point. Teaming policies it offers through HV_FACTORY_TEAMING: failover, portid,
 * machash, iphash. */
#ifndef HVTEAMING_STANDARD_H
#define HVTEAMING_STANDARD_H
#include "hvplugin.h"
const hv_plugin_entry *hv_plugin_entry_v1(void);
#endif
