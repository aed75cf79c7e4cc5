/* etl_error helpers: the one way an error record is filled. */
#include <etlrun/error.h>

#include <stdio.h>
#include <string.h>

etl_status etl_vfail(etl_error *err, etl_status status, const char *name, const char *fmt,
                     va_list ap)
{
    if (!err)
        return status;
    err->status = status;
    snprintf(err->name, sizeof err->name, "%s", name ? name : "");
    int n = vsnprintf(err->cause, sizeof err->cause, fmt ? fmt : "", ap);
    if (n >= (int)sizeof err->cause)
        memcpy(err->cause + sizeof err->cause - 4, "...", 4);
    err->transient = false;
    return status;
}

etl_status etl_fail(etl_error *err, etl_status status, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_vfail(err, status, name, fmt, ap);
    va_end(ap);
    return status;
}

void etl_error_clear(etl_error *err)
{
    if (!err)
        return;
    err->status = ETL_OK;
    err->name[0] = '\0';
    err->cause[0] = '\0';
    err->transient = false;
}
