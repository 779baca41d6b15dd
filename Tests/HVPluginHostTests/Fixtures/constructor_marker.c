/* Exports hv_plugin_entry_v1 and, when loaded, creates the file named by MARKER from its
 * constructor: a test that finds no file knows the library was never dlopen'ed. */
#define _POSIX_C_SOURCE 200809L
#include <hvplugin.h>
#include <fcntl.h>
#include <unistd.h>

__attribute__((constructor)) static void mark(void) {
    int fd = open(MARKER, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0) close(fd);
}

const hv_plugin_entry *hv_plugin_entry_v1(void) { return 0; }
