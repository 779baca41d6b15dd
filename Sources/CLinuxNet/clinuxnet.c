/* Header-only module: see include/clinuxnet.h. */
#include "clinuxnet.h"
