// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, pkg-config `openblas`).
#include <cblas.h>
// openblas_set_num_threads is declared in OpenBLAS's cblas.h; re-declared here in case another cblas.h wins.
void openblas_set_num_threads(int num_threads);
