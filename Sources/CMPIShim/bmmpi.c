// Open MPI through dlopen: see include/bmmpi.h.
#define _GNU_SOURCE
#include "bmmpi.h"
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef void *handle_t;   // MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler: pointers in Open MPI
#define MPI_SUCCESS_ 0
#define MPI_THREAD_FUNNELED_ 1
#define MPI_IN_PLACE_ ((void *)1)          // mpi.h: #define MPI_IN_PLACE ((void *) 1)
#define MPI_MAX_ERROR_STRING_ 256

static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_initialized)(int *);
static int (*p_finalized)(int *);
static int (*p_finalize)(void);
static int (*p_comm_rank)(handle_t, int *);
static int (*p_comm_size)(handle_t, int *);
static int (*p_allreduce)(const void *, void *, int, handle_t, handle_t, handle_t);
static int (*p_barrier)(handle_t);
static int (*p_abort)(handle_t, int);
static int (*p_error_string)(int, char *, int *);
static int (*p_set_errhandler)(handle_t, handle_t);
static handle_t h_comm_world, h_float, h_double, h_uint64, h_sum, h_min, h_max, h_errors_return;
static int loaded = 0, initialised = 0, my_rank = 0;

int bm_mpi_load(char *err, int errlen) {
    if (loaded) return 0;
    // RTLD_GLOBAL: Open MPI's own components (dlopened plugins) resolve symbols of libmpi
    void *h = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        snprintf(err, errlen, "Open MPI is not installed (cannot load libmpi.so.40: %s); install openmpi-bin and libopenmpi-dev (make deps)", dlerror());
        return -1;
    }
#define SYM(var, name) do { *(void **)&var = dlsym(h, name); if (!var) { snprintf(err, errlen, "libmpi.so.40 has no symbol %s (not Open MPI 4 or 5?)", name); return -1; } } while (0)
    SYM(p_init_thread, "MPI_Init_thread"); SYM(p_initialized, "MPI_Initialized"); SYM(p_finalized, "MPI_Finalized");
    SYM(p_finalize, "MPI_Finalize"); SYM(p_comm_rank, "MPI_Comm_rank"); SYM(p_comm_size, "MPI_Comm_size");
    SYM(p_allreduce, "MPI_Allreduce"); SYM(p_barrier, "MPI_Barrier"); SYM(p_abort, "MPI_Abort");
    SYM(p_error_string, "MPI_Error_string"); SYM(p_set_errhandler, "MPI_Comm_set_errhandler");
    // the predefined handles: the addresses mpi.h's macros take
    SYM(h_comm_world, "ompi_mpi_comm_world"); SYM(h_float, "ompi_mpi_float"); SYM(h_double, "ompi_mpi_double");
    SYM(h_uint64, "ompi_mpi_uint64_t"); SYM(h_sum, "ompi_mpi_op_sum"); SYM(h_min, "ompi_mpi_op_min");
    SYM(h_max, "ompi_mpi_op_max"); SYM(h_errors_return, "ompi_mpi_errors_return");
#undef SYM
    loaded = 1;
    return 0;
}

static void describe(int code, const char *what, char *err, int errlen) {
    char s[MPI_MAX_ERROR_STRING_] = {0};
    int n = 0;
    if (p_error_string && p_error_string(code, s, &n) != MPI_SUCCESS_) snprintf(s, sizeof s, "error code %d", code);
    snprintf(err, errlen, "%s failed: %s", what, s);
}

// ---- the collective watchdog -------------------------------------------------------
static _Atomic double deadline = 0;        // monotonic seconds; 0: no collective in flight
static double watchdog_timeout = 0;
static char context[256] = "";
static pthread_mutex_t context_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        double d = atomic_load(&deadline);
        if (d > 0 && now_s() > d) {
            pthread_mutex_lock(&context_lock);
            fprintf(stderr, "error: rank %d: a collective (%s) has waited %.0f s for the other ranks; one of them has died or hangs. "
                            "Ending the job; `bmlab train … --resume` continues from the last checkpoint (BMLAB_MPI_TIMEOUT sets the wait)\n",
                    my_rank, context[0] ? context : "start-up", watchdog_timeout);
            pthread_mutex_unlock(&context_lock);
            fflush(stderr);
            _exit(75);   // mpirun (or srun --kill-on-bad-exit) then ends the other ranks
        }
    }
    return NULL;
}

static void arm(void) { if (watchdog_timeout > 0) atomic_store(&deadline, now_s() + watchdog_timeout); }
static void disarm(void) { atomic_store(&deadline, 0); }

// The SIGTERM handler's line, made here (not in the handler: snprintf is not
// async-signal-safe) into the buffer the handler does not read, then published.
static char term_line[2][600];
static int term_len[2];
static atomic_int term_index = 0;

static void make_term_line(void) {
    int next = 1 - atomic_load(&term_index);
    int n = snprintf(term_line[next], sizeof term_line[next],
                     "bmlab: rank %d: ended by SIGTERM during %s (the launcher ends every rank when one fails); "
                     "`bmlab train ... --resume` continues from the last checkpoint\n", my_rank, context[0] ? context : "start-up");
    term_len[next] = n < 0 ? 0 : (n < (int)sizeof term_line[next] ? n : (int)sizeof term_line[next] - 1);
    atomic_store(&term_index, next);
}

void bm_mpi_set_context(const char *what) {
    pthread_mutex_lock(&context_lock);
    snprintf(context, sizeof context, "%s", what);
    make_term_line();
    pthread_mutex_unlock(&context_lock);
}

// SIGTERM (what mpirun sends the surviving ranks when one dies, and srun at a time
// limit): one line from each survivor saying what it was doing, then exit 143. Only
// async-signal-safe calls (write, _exit) on a line made beforehand (make_term_line).
static void on_term(int sig) {
    (void)sig;
    int i = atomic_load(&term_index);
    if (term_len[i] > 0) { ssize_t w = write(2, term_line[i], (size_t)term_len[i]); (void)w; }
    _exit(143);
}

int bm_mpi_init(int *rank, int *size, double timeout_s, char *err, int errlen) {
    if (!loaded && bm_mpi_load(err, errlen) != 0) return -1;
    if (!initialised) {
        int provided = 0;
        int rc = p_init_thread(NULL, NULL, MPI_THREAD_FUNNELED_, &provided);
        if (rc != MPI_SUCCESS_) { describe(rc, "MPI_Init_thread", err, errlen); return -1; }
        if (provided < MPI_THREAD_FUNNELED_) {
            snprintf(err, errlen, "this Open MPI provides thread level %d, below MPI_THREAD_FUNNELED", provided);
            return -1;
        }
        // errors come back as codes (and messages), not as an abort from inside the library
        p_set_errhandler(h_comm_world, h_errors_return);
        initialised = 1;
        watchdog_timeout = timeout_s;
        if (timeout_s > 0) {
            pthread_t t;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            pthread_create(&t, &a, watchdog, NULL);
            pthread_attr_destroy(&a);
        }
    }
    p_comm_rank(h_comm_world, rank);
    p_comm_size(h_comm_world, size);
    my_rank = *rank;
    pthread_mutex_lock(&context_lock);
    make_term_line();
    pthread_mutex_unlock(&context_lock);
    if (*size > 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
    }
    return 0;
}

// MPI's count is an int: a slab above 2^31 - 1 elements goes in pieces (same order on every rank)
static int allreduce_chunks(void *buf, int64_t count, size_t elsize, handle_t type, handle_t op, char *err, int errlen) {
    const int64_t most = 1 << 30;
    arm();
    for (int64_t off = 0; off < count; off += most) {
        int64_t n = count - off < most ? count - off : most;
        int rc = p_allreduce(MPI_IN_PLACE_, (char *)buf + off * (int64_t)elsize, (int)n, type, op, h_comm_world);
        if (rc != MPI_SUCCESS_) { disarm(); describe(rc, "MPI_Allreduce", err, errlen); return rc; }
    }
    disarm();
    return 0;
}

int bm_mpi_allreduce_sum_float(float *buf, int64_t count, char *err, int errlen) {
    return allreduce_chunks(buf, count, sizeof(float), h_float, h_sum, err, errlen);
}

int bm_mpi_allreduce_sum_double(double *buf, int64_t count, char *err, int errlen) {
    return allreduce_chunks(buf, count, sizeof(double), h_double, h_sum, err, errlen);
}

int bm_mpi_allreduce_minmax_u64(uint64_t value, uint64_t *minv, uint64_t *maxv, char *err, int errlen) {
    *minv = value; *maxv = value;
    int rc = allreduce_chunks(minv, 1, sizeof(uint64_t), h_uint64, h_min, err, errlen);
    if (rc) return rc;
    return allreduce_chunks(maxv, 1, sizeof(uint64_t), h_uint64, h_max, err, errlen);
}

int bm_mpi_barrier(char *err, int errlen) {
    arm();
    int rc = p_barrier(h_comm_world);
    disarm();
    if (rc != MPI_SUCCESS_) { describe(rc, "MPI_Barrier", err, errlen); return rc; }
    return 0;
}

void bm_mpi_abort(int code) {
    if (initialised) p_abort(h_comm_world, code);
    _exit(code);
}

int bm_mpi_finalize(void) {
    if (!initialised) return 0;
    int done = 0;
    p_finalized(&done);
    if (done) return 0;
    disarm();
    return p_finalize();
}
