/* The input echo shared with console-input: svga-draw echoes keys and pointer
 * packets once its picture is drawn. */
#include "../console-input/input_echo.c"
