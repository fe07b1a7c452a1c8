/* Error codes and the message buffer every fallible core call fills. */
#ifndef FL_ERROR_H
#define FL_ERROR_H

typedef enum fl_status {
  FL_OK = 0,
  FL_EINVAL,   /* bad argument */
  FL_ENOMEM,   /* host allocation failed */
  FL_EIO,      /* file could not be opened, read or written */
  FL_EFORMAT,  /* malformed file contents */
  FL_ENODEV,   /* CUDA driver or device not available */
  FL_ECUDA,    /* a CUDA driver call failed */
  FL_ECOMPILE  /* generated source did not compile (NVRTC) */
} fl_status;

typedef struct fl_err {
  fl_status status;
  char msg[512];
} fl_err;

/* Records a formatted message in e (which may be NULL) and returns s. */
fl_status fl_fail(fl_err *e, fl_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void fl_err_clear(fl_err *e);

#endif
