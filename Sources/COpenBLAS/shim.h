/* COpenBLAS: the CBLAS interface of the system OpenBLAS (Debian libopenblas-dev). */
#include <cblas.h>
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);
