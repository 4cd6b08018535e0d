// cblas.h from OpenBLAS also declares openblas_set_num_threads / openblas_get_corename.
#include <cblas.h>
