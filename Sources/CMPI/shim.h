// CMPI: the only code in the project that includes <mpi.h>.
//
// Why this shim exists: in OpenMPI, MPI_COMM_WORLD, MPI_FLOAT, MPI_DOUBLE, MPI_SUM,
// MPI_IN_PLACE, MPI_REQUEST_NULL, MPI_STATUS_IGNORE, ... are C macros that expand to the
// address of global structs (e.g. `((MPI_Comm)&ompi_mpi_comm_world)`). Swift's C importer
// does not import such macros, so Swift cannot name them. The shim turns every operation the
// project needs into a plain `static inline` function (prefix `CMPI_`) that uses the macros
// on the C side. Every function returns the MPI error code (MPI_SUCCESS == 0) so the Swift
// side (Sources/Distributed) can turn failures into errors with MPI's own error string;
// results come back through out-parameters.
//
// Counts are C `int`, as in MPI; the Swift side splits larger buffers into chunks.
// Threading: the project requests MPI_THREAD_FUNNELED, so only the main thread calls MPI.
#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H

#include <mpi.h>
#include <stdint.h>

// MARK: Constants (macros or enum values on the C side)

static inline int CMPI_success(void) { return MPI_SUCCESS; }
static inline int CMPI_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int CMPI_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int CMPI_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int CMPI_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
/// Size of the buffer CMPI_error_string needs.
static inline int CMPI_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
/// Size of the buffer CMPI_processor_name needs.
static inline int CMPI_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }

// MARK: Life cycle

/// MPI_Init_thread requesting `required` (use CMPI_thread_funneled()); `*provided` gets the
/// level MPI grants. Right after a successful init, COMM_WORLD's error handler is set to
/// MPI_ERRORS_RETURN so failures come back as codes instead of killing the job silently.
static inline int CMPI_init_thread(int required, int *provided) {
    int rc = MPI_Init_thread(NULL, NULL, required, provided);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

/// Sets MPI_ERRORS_RETURN on COMM_WORLD (for when MPI was initialized by someone else).
static inline int CMPI_set_errors_return(void) {
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

static inline int CMPI_initialized(int *flag) { return MPI_Initialized(flag); }
static inline int CMPI_finalized(int *flag) { return MPI_Finalized(flag); }
static inline int CMPI_finalize(void) { return MPI_Finalize(); }
static inline int CMPI_query_thread(int *provided) { return MPI_Query_thread(provided); }
static inline int CMPI_is_thread_main(int *flag) { return MPI_Is_thread_main(flag); }

/// Ends every process of COMM_WORLD with `code`; does not return when MPI works.
static inline int CMPI_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

/// MPI's text for an error code; `buf` must hold CMPI_max_error_string() bytes.
static inline int CMPI_error_string(int code, char *buf, int *length) {
    return MPI_Error_string(code, buf, length);
}

// MARK: COMM_WORLD facts

static inline int CMPI_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
static inline int CMPI_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

/// `buf` must hold CMPI_max_processor_name() bytes.
static inline int CMPI_processor_name(char *buf, int *length) {
    return MPI_Get_processor_name(buf, length);
}

// MARK: Blocking collectives on COMM_WORLD

static inline int CMPI_allreduce_sum_float(float *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int CMPI_allreduce_sum_double(double *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static inline int CMPI_allreduce_sum_int64(int64_t *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
}

static inline int CMPI_allreduce_max_int64(int64_t *buf, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
}

static inline int CMPI_bcast_bytes(void *buf, int count, int root) {
    return MPI_Bcast(buf, count, MPI_BYTE, root, MPI_COMM_WORLD);
}

static inline int CMPI_bcast_float(float *buf, int count, int root) {
    return MPI_Bcast(buf, count, MPI_FLOAT, root, MPI_COMM_WORLD);
}

/// Every rank sends `count` bytes; `recv` holds size * count bytes, rank r's at r * count.
static inline int CMPI_allgather_bytes(const void *send, int count, void *recv) {
    return MPI_Allgather(send, count, MPI_BYTE, recv, count, MPI_BYTE, MPI_COMM_WORLD);
}

/// Variable lengths: rank r sends `recvcounts[r]` bytes, placed at `recv + displs[r]`.
static inline int CMPI_allgatherv_bytes(const void *send, int sendcount, void *recv,
                                        const int *recvcounts, const int *displs) {
    return MPI_Allgatherv(send, sendcount, MPI_BYTE, recv, recvcounts, displs, MPI_BYTE,
                          MPI_COMM_WORLD);
}

static inline int CMPI_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

// MARK: Requests

/// Caller-provided storage for one MPI request handle. The buffer passed to the
/// operation must stay valid and untouched until the request completes.
typedef struct CMPI_Request {
    MPI_Request handle;
} CMPI_Request;
_Static_assert(sizeof(CMPI_Request) == sizeof(MPI_Request), "CMPI_Request arrays are MPI_Request arrays");

/// Sets the handle to MPI_REQUEST_NULL (a completed/inactive request).
static inline void CMPI_request_init(CMPI_Request *request) {
    request->handle = MPI_REQUEST_NULL;
}

/// 1 when the handle is MPI_REQUEST_NULL (never started, or completed by wait/test).
static inline int CMPI_request_is_null(const CMPI_Request *request) {
    return request->handle == MPI_REQUEST_NULL;
}

// MARK: Point-to-point (the gradient sum in rank order, Sources/Distributed/RankOrderSum.swift)

/// MPI_Isend of `count` floats to `dest` on COMM_WORLD. `buf` stays untouched until completion.
static inline int CMPI_isend_float(const float *buf, int count, int dest, int tag, CMPI_Request *request) {
    return MPI_Isend(buf, count, MPI_FLOAT, dest, tag, MPI_COMM_WORLD, &request->handle);
}

/// MPI_Irecv of `count` floats from `source` on COMM_WORLD into `buf`.
static inline int CMPI_irecv_float(float *buf, int count, int source, int tag, CMPI_Request *request) {
    return MPI_Irecv(buf, count, MPI_FLOAT, source, tag, MPI_COMM_WORLD, &request->handle);
}

/// Drives progress; `*done` is 1 once all `n` requests completed (handles then MPI_REQUEST_NULL;
/// null handles count as complete). CMPI_Request wraps exactly one MPI_Request, so an array of
/// them is an array of MPI_Request.
static inline int CMPI_testall(int n, CMPI_Request *requests, int *done) {
    return MPI_Testall(n, &requests->handle, done, MPI_STATUSES_IGNORE);
}

/// Blocks until all `n` requests completed.
static inline int CMPI_waitall(int n, CMPI_Request *requests) {
    return MPI_Waitall(n, &requests->handle, MPI_STATUSES_IGNORE);
}

#endif // CMPI_SHIM_H
