/* zlib (Debian zlib1g-dev): deflate for the PNG encoder, gzip reading for PSF fonts. */
#include <zlib.h>
