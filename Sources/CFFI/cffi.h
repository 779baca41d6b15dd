/* libffi (Debian libffi-dev), for HVPluginHost's typed plugin commands. */
#include <ffi.h>
