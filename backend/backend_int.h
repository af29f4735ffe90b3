/* SPDX-License-Identifier: GPL-2.0 */
/*
 * backend_int.h - shared between the backend implementations only.
 *
 * Thread safety: the factories are constant tables.
 */
#ifndef STAGEFS_BACKEND_INT_H
#define STAGEFS_BACKEND_INT_H

#include "backend.h"

extern const struct be_factory be_posix_factory;
#ifdef STAGEFS_HAVE_NFS
extern const struct be_factory be_nfs_factory;
#endif

#endif /* STAGEFS_BACKEND_INT_H */
