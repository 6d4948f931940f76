// Getters for the libhdf5 macros that Swift cannot import (they expand to
// H5open() plus a global, or are 64-bit constants built from casts).
// Using a macro inside a getter also runs H5open() first.
#pragma once
#include <hdf5.h>

static inline hid_t bm_h5t_native_float(void)  { return H5T_NATIVE_FLOAT; }
static inline hid_t bm_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t bm_h5t_native_int64(void)  { return H5T_NATIVE_INT64; }
static inline hid_t bm_h5t_native_int32(void)  { return H5T_NATIVE_INT32; }
static inline hid_t bm_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t bm_h5t_c_s1(void)          { return H5T_C_S1; }
static inline size_t bm_h5t_variable(void)     { return H5T_VARIABLE; }
static inline unsigned bm_h5f_acc_trunc(void)  { return H5F_ACC_TRUNC; }
static inline unsigned bm_h5f_acc_excl(void)   { return H5F_ACC_EXCL; }
static inline unsigned bm_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned bm_h5f_acc_rdwr(void)   { return H5F_ACC_RDWR; }
static inline hid_t bm_h5p_dataset_create(void){ return H5P_DATASET_CREATE; }
static inline hid_t bm_h5p_file_access(void)   { return H5P_FILE_ACCESS; }
static inline hid_t bm_h5p_default(void)       { return H5P_DEFAULT; }
static inline hid_t bm_h5s_all(void)           { return H5S_ALL; }
static inline hsize_t bm_h5s_unlimited(void)   { return H5S_UNLIMITED; }
static inline int bm_h5f_libver_latest(void)   { return H5F_LIBVER_LATEST; }
static inline int bm_h5f_libver_v18(void)      { return H5F_LIBVER_V18; }
static inline hid_t bm_h5e_default(void)       { return H5E_DEFAULT; }

// Added for BMStorage.
static inline unsigned bm_h5f_acc_swmr_write(void) { return H5F_ACC_SWMR_WRITE; }
static inline unsigned bm_h5f_acc_swmr_read(void)  { return H5F_ACC_SWMR_READ; }
static inline unsigned bm_h5f_obj_all(void)        { return H5F_OBJ_ALL; }
static inline hid_t bm_h5p_link_create(void)       { return H5P_LINK_CREATE; }
static inline hid_t bm_h5p_file_create(void)       { return H5P_FILE_CREATE; }
