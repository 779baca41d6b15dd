/* A shared library that is not a plugin: no hv_plugin_entry_v1. */
int not_a_plugin(void) { return 42; }
