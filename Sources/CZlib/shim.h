// zlib, to read the gzipped IDX datasets as Debian ships them.
#include <zlib.h>
