// make test-mpi: the handles the toolkit resolves by name at run time (Sources/CMPIShim)
// are the ones the installed mpi.h's macros give. Built with `pkg-config --cflags --libs ompi-c`.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpi.h>
#include <stdio.h>

int main(void) {
    struct { const char *name; void *macro; } h[] = {
        {"ompi_mpi_comm_world", (void *)MPI_COMM_WORLD}, {"ompi_mpi_float", (void *)MPI_FLOAT},
        {"ompi_mpi_double", (void *)MPI_DOUBLE}, {"ompi_mpi_uint64_t", (void *)MPI_UINT64_T},
        {"ompi_mpi_op_sum", (void *)MPI_SUM}, {"ompi_mpi_op_min", (void *)MPI_MIN},
        {"ompi_mpi_op_max", (void *)MPI_MAX}, {"ompi_mpi_errors_return", (void *)MPI_ERRORS_RETURN},
    };
    int bad = 0;
    for (unsigned i = 0; i < sizeof h / sizeof h[0]; i++) {
        void *s = dlsym(RTLD_DEFAULT, h[i].name);
        if (s != h[i].macro) { fprintf(stderr, "abi-check: %s is %p, the mpi.h macro gives %p\n", h[i].name, s, h[i].macro); bad = 1; }
    }
    if (MPI_IN_PLACE != (void *)1 || MPI_THREAD_FUNNELED != 1 || MPI_SUCCESS != 0) { fprintf(stderr, "abi-check: a constant differs\n"); bad = 1; }
    printf("abi-check: %s (Open MPI %d.%d.%d)\n", bad ? "FAILED" : "the shim's handles equal mpi.h's", OMPI_MAJOR_VERSION, OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION);
    return bad;
}
